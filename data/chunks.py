"""Chunks: reading one, filling a batch, drawing random ones, listing validation ones.

    read_chunk(record, start_s, duration_s, ...) -> {"waveform" (1, S), "video" (Tv, E),
                                                      "video_mask" (Tv,), "target" (F, K)}
    make_batch(index, chunks [(file position, start_s)], duration_s, ...) -> batch dict
    batch_spec(size, duration_s, ...) -> ((name, shape, dtype), ...) of a batch's tensors
    fill_batch(out {name: tensor}, index, chunks, duration_s, ...)   # in place, e.g. in a
                                                                     # data.slots buffer
    TrainSampler(index, duration_s).draw(rng, batch_size) -> [(file position, start_s)]
    validation_chunks(index, duration_s, rank, world_size) -> [(FileRecord, start_s)]

S = round(duration_s * 16000) samples, Tv = round(duration_s * video_fps) frames,
F = num_frames(S) model frames, K = max_speakers. The batch dict follows the batch
contract: "waveforms" (B, 1, S) float32, "video" (B, Tv, E) float32, "video_mask"
(B, Tv) bool, "target" (B, F, K) float32, "uri" list[str], "start_s" (B,) float64.

Filling a batch reads mono 16 kHz 16-bit PCM files as raw int16 and float16 embeddings
as float16 into per-process scratch arrays and converts them with torch: int16 * 2**-15
is exactly what a float32 read returns, and float16 -> float32 is exact, but libsndfile's
and numpy's conversions are several times slower than torch's vectorised ones.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import get_worker_info

from data.audio import SAMPLE_RATE, is_pcm16, read_audio_into
from data.index import DataError, FileIndex, FileRecord
from data.targets import chunk_frame_times, chunk_target
from data.video import read_video_into, video_dtype


def chunk_shapes(duration_s: float, video_fps: float = 25.0, stride: int = 10
                 ) -> Tuple[int, int, int]:
    """(samples S, video frames Tv, model frames F) of a chunk of `duration_s` seconds."""
    return (int(round(duration_s * SAMPLE_RATE)), int(round(duration_s * video_fps)),
            len(chunk_frame_times(float(duration_s), stride)))


def read_chunk(record: FileRecord, start_s: float, duration_s: float, *, max_speakers: int = 3,
               esize: int = 0, video_fps: float = 25.0, stride: int = 10
               ) -> Dict[str, torch.Tensor]:
    """One chunk: "waveform" (1, S), "video" (Tv, esize), "video_mask" (Tv,), "target" (F, K)."""
    samples, video_frames, _ = chunk_shapes(duration_s, video_fps, stride)
    waveform = np.zeros(samples, dtype=np.float32)
    read_audio_into(waveform, record, start_s)
    video = np.zeros((video_frames, esize), dtype=np.float32)
    mask = np.zeros(video_frames, dtype=bool)
    read_video_into(video, mask, record, start_s, video_fps)
    target, _ = chunk_target(record, start_s, duration_s, max_speakers, stride)
    return {"waveform": torch.from_numpy(waveform).unsqueeze(0), "video": torch.from_numpy(video),
            "video_mask": torch.from_numpy(mask), "target": torch.from_numpy(target)}


def _empty(shape, dtype) -> torch.Tensor:
    """A tensor in shared memory inside DataLoader workers (saves a copy on the way out)."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    numel = int(np.prod(shape))
    storage = torch.UntypedStorage._new_shared(numel * torch.empty(0, dtype=dtype).element_size())
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


def batch_spec(size: int, duration_s: float, *, max_speakers: int = 3, esize: int = 0,
               video_fps: float = 25.0, stride: int = 10
               ) -> Tuple[Tuple[str, Tuple[int, ...], torch.dtype], ...]:
    """(name, shape, dtype) of the tensors of a batch of `size` chunks (batch contract)."""
    samples, video_frames, frames = chunk_shapes(duration_s, video_fps, stride)
    return (("waveforms", (size, 1, samples), torch.float32),
            ("video", (size, video_frames, esize), torch.float32),
            ("target", (size, frames, max_speakers), torch.float32),
            ("start_s", (size,), torch.float64),
            ("video_mask", (size, video_frames), torch.bool))


_scratch_arrays: Dict[Tuple[Tuple[int, ...], str], np.ndarray] = {}


def _scratch(shape: Tuple[int, ...], dtype) -> np.ndarray:
    """A per-process reusable array (its pages stay in place from batch to batch)."""
    key = (tuple(shape), np.dtype(dtype).str)
    if key not in _scratch_arrays:
        _scratch_arrays[key] = np.empty(shape, dtype=dtype)
    return _scratch_arrays[key]


def fill_batch(out: Dict[str, torch.Tensor], index: FileIndex,
               chunks: Sequence[Tuple[int, float]], duration_s: float, *,
               max_speakers: int = 3, video_fps: float = 25.0, stride: int = 10) -> List[str]:
    """Write the chunks [(file position in index, start_s)] into the tensors `out` (names
    and shapes of `batch_spec`); returns their uris."""
    waveforms, video = out["waveforms"], out["video"]
    m, t = out["video_mask"].numpy(), out["target"].numpy()
    samples, video_frames, esize = waveforms.shape[-1], video.shape[1], video.shape[2]
    uris = []
    for b, (position, start_s) in enumerate(chunks):
        record = index[position]
        if is_pcm16(record):  # raw int16, converted by torch (exact, and faster)
            pcm = _scratch((samples,), np.int16)
            read_audio_into(pcm, record, start_s)
            waveforms[b, 0].copy_(torch.from_numpy(pcm)).mul_(2.0 ** -15)
        else:
            read_audio_into(waveforms[b, 0].numpy(), record, start_s)
        if esize and video_dtype(record) == np.float16:
            half = _scratch((video_frames, esize), np.float16)
            read_video_into(half, m[b], record, start_s, video_fps)
            video[b].copy_(torch.from_numpy(half))
        else:
            read_video_into(video[b].numpy(), m[b], record, start_s, video_fps)
        chunk_target(record, start_s, duration_s, max_speakers, stride, out=t[b])
        uris.append(record.uri)
    out["start_s"].copy_(torch.tensor([float(s) for _, s in chunks], dtype=torch.float64))
    return uris


def make_batch(index: FileIndex, chunks: Sequence[Tuple[int, float]], duration_s: float, *,
               max_speakers: int = 3, esize: int = 0, video_fps: float = 25.0, stride: int = 10
               ) -> Dict:
    """A batch dict (batch contract) for `chunks` = [(file position in index, start_s)],
    in fresh memory (shared memory inside a DataLoader worker; data.slots recycles it)."""
    spec = batch_spec(len(chunks), duration_s, max_speakers=max_speakers, esize=esize,
                      video_fps=video_fps, stride=stride)
    batch = {name: _empty(shape, dtype) for name, shape, dtype in spec}
    batch["uri"] = fill_batch(batch, index, chunks, duration_s, max_speakers=max_speakers,
                              video_fps=video_fps, stride=stride)
    return batch


class TrainSampler:
    """Random chunk positions as in pyannote's SpeakerDiarization task.

    A file is drawn with probability proportional to its annotated duration, then one of
    its annotated regions proportionally to its duration, then a uniform start inside it.
    Only regions at least `duration_s` long count (as in pyannote); files without one
    are never drawn (`data_summary` lists them). Drawing a region proportionally to its
    duration over all files is the same two-step draw, done in one vectorised step.
    """

    def __init__(self, index: FileIndex, duration_s: float):
        files, starts, ends = [], [], []
        offsets = index.annotated_offsets
        for i in range(len(index)):
            if index.num_samples[i] == 0:
                continue
            for start, end in index.annotated[offsets[i]:offsets[i + 1]]:
                if end - start >= duration_s:
                    files.append(i)
                    starts.append(start)
                    ends.append(end)
        if not files:
            raise DataError(f"no {index.split} file of {index.protocol} has an annotated region "
                            f"of at least {duration_s:g} s: nothing to train on (shorter chunks "
                            f"with --duration, or check the UEM files)")
        self.duration_s = float(duration_s)
        self.files = np.array(files, dtype=np.int64)
        self.starts = np.array(starts, dtype=np.float64)
        self.ends = np.array(ends, dtype=np.float64)
        lengths = self.ends - self.starts
        self.cumulative = np.cumsum(lengths) / lengths.sum()
        self.total_s = float(lengths.sum())

    def draw(self, rng: np.random.Generator, batch_size: int) -> List[Tuple[int, float]]:
        """`batch_size` chunks [(file position, start_s)]."""
        regions = np.searchsorted(self.cumulative, rng.random(batch_size), side="right")
        regions = np.minimum(regions, len(self.files) - 1)
        span = self.ends[regions] - self.starts[regions] - self.duration_s
        starts = self.starts[regions] + rng.random(batch_size) * span
        return [(int(f), float(s)) for f, s in zip(self.files[regions], starts)]


def validation_chunks(index: FileIndex, duration_s: float, rank: int = 0, world_size: int = 1
                      ) -> List[Tuple[FileRecord, float]]:
    """Non-overlapping chunks tiling every annotated region (left-aligned; a remainder
    shorter than `duration_s` is not used), in index order, then every world_size-th from
    `rank` on. Ranks may get one chunk fewer than others: reduce sums, not means."""
    chunks: List[Tuple[FileRecord, float]] = []
    for record in index:
        if record.num_samples == 0:
            continue
        for start, end in record.annotated:
            count = int(np.floor((end - start) / duration_s + 1e-9))
            chunks += [(record, float(start + k * duration_s)) for k in range(count)]
    return chunks[rank::world_size]
