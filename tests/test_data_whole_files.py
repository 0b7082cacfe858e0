"""Whole-file reads for eval and infer (data/audio.py read_audio_file, data/video.py
read_video_file): the same readers as training's chunks, on files in no protocol."""

import numpy as np
import pytest
import soundfile as sf
import torch

from data.audio import read_audio, read_audio_file
from data.index import DataError
from data.video import read_video_file


def test_a_16k_mono_file_reads_exactly(tmp_path):
    samples = (np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 3)).astype(np.float32)
    path = tmp_path / "mono.wav"
    sf.write(path, samples, 16000, subtype="FLOAT")
    waveform = read_audio_file(str(path))
    assert waveform.dtype == torch.float32 and waveform.shape == (1, 16000 * 3)
    assert torch.equal(waveform[0], torch.from_numpy(samples))


def test_a_stereo_8k_file_is_averaged_and_resampled_like_a_chunk(tmp_path):
    import torchaudio.functional as AF

    t = np.arange(8000 * 2) / 8000
    left, right = 0.4 * np.sin(2 * np.pi * 200 * t), 0.2 * np.sin(2 * np.pi * 450 * t)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    with pytest.warns(UserWarning):
        waveform = read_audio_file(str(path))
    assert waveform.shape == (1, 16000 * 2)
    whole = AF.resample(torch.from_numpy((left + right) / 2).float(), 8000, 16000)
    torch.testing.assert_close(waveform[0], whole, rtol=0, atol=1e-4)
    # a chunk read from the same file (as training reads it) is the same samples
    from data.audio import file_record

    chunk = read_audio(file_record(str(path)), 0.5, 1.0)
    torch.testing.assert_close(chunk, waveform[:, 8000:24000], rtol=0, atol=1e-5)


def test_unreadable_audio_names_the_file(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("not audio")
    with pytest.raises(DataError, match=r"notes\.wav: cannot read audio"):
        read_audio_file(str(path))


def test_video_file_is_mapped_and_its_width_checked(tmp_path):
    embeddings = np.arange(50 * 6, dtype=np.float16).reshape(50, 6)
    np.save(tmp_path / "u.npy", embeddings)
    video = read_video_file(str(tmp_path / "u.npy"), esize=6)
    assert isinstance(video, np.memmap) and np.array_equal(video, embeddings)
    with pytest.raises(DataError, match=r"u\.npy: video embeddings have size 6, but the "
                                        r"model takes esize 8"):
        read_video_file(str(tmp_path / "u.npy"), esize=8)
    np.save(tmp_path / "flat.npy", np.zeros(10, dtype=np.float32))
    with pytest.raises(DataError, match=r"flat\.npy: video embeddings must be \(frames, E\)"):
        read_video_file(str(tmp_path / "flat.npy"))
