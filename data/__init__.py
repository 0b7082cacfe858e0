"""avdiar data: protocols, file index, audio/video chunk reading, batches, synthetic database.

Public API (see each module's docstring for shapes and units):

    load_protocol(name, database_files=()) -> pyannote protocol          (data.protocol)
    build_index(protocol, split, *, video_dir=None, video_template="{uri}.npy", esize=None,
                video_fps=25.0, cache_dir=None, require_video=False, database_files=(),
                progress=True) -> FileIndex                             (data.index)
    data_summary(index, duration_s=None) -> str                          (data.index)
    read_audio(record, start_s=None, duration_s=None) -> (1, S) float32  (data.audio)
    read_audio_file(path) -> (1, S) float32, a whole file in no protocol  (data.audio)
    read_video(record, start_s, duration_s, fps=25.0, esize=None)
        -> (video (Tv, E) float32, video_mask (Tv,) bool)               (data.video)
    read_video_file(path, esize=None, duration_s=None, fps=25.0)
        -> (frames, E) memory-mapped, checked as training's index checks  (data.video)
    read_rttm(path) -> {uri: Annotation}; read_uem(path) -> {uri: Timeline}
        (every bad line a DataError naming the file and the line)         (data.references)
    chunk_target(record, start_s, duration_s, max_speakers=3) -> ((F, K) float32, labels)
    read_chunk(record, start_s, duration_s, *, max_speakers=3, esize=0, video_fps=25.0)
        -> {"waveform", "video", "video_mask", "target"}                 (data.chunks)
    make_batch(index, [(file position, start_s)], duration_s, ...) -> batch dict
    validation_chunks(index, duration_s, rank=0, world_size=1) -> [(FileRecord, start_s)]
    make_train_loader(index, *, duration_s, batch_size, ..., epoch=0, start_batch=0)
        -> TrainLoader                                                   (data.loader)
    make_validation_loader(index, *, duration_s, batch_size, ...) -> DataLoader
    generate_database(out_dir, *, files=6, minutes=4.0, esize=128, seed=0,
                      speech="synthetic" or a LibriSpeech folder) -> database.yml
                                                                         (data.synthetic)
    resolve_speech(None | "auto" | "synthetic" | folder) -> speech      (data.real_speech)
"""

from data.audio import read_audio, read_audio_file
from data.chunks import make_batch, read_chunk, validation_chunks
from data.index import DataError, DataWarning, FileIndex, FileRecord, build_index, data_summary
from data.loader import (
    TrainChunks,
    TrainLoader,
    ValidationChunks,
    make_train_loader,
    make_validation_loader,
    stable_seed,
)
from data.protocol import ProtocolError, load_protocol
from data.references import read_rttm, read_uem
from data.synthetic import PROTOCOL as SYNTHETIC_PROTOCOL
from data.synthetic import generate_database
from data.targets import chunk_target
from data.video import read_video, read_video_file

__all__ = [
    "DataError", "DataWarning", "FileIndex", "FileRecord", "ProtocolError", "SYNTHETIC_PROTOCOL",
    "TrainChunks", "TrainLoader", "ValidationChunks", "build_index", "chunk_target",
    "data_summary", "generate_database", "load_protocol", "make_batch", "make_train_loader",
    "make_validation_loader", "read_audio", "read_audio_file", "read_chunk", "read_video",
    "read_rttm", "read_uem", "read_video_file", "stable_seed",
    "validation_chunks",
]
