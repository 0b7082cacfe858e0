"""Bad input at data/'s readers, where train, eval and infer all read: non-finite audio
samples, truncated WAV files, RTTM/UEM lines, and the one rule for video embeddings."""

from __future__ import annotations

import warnings

import numpy as np
import soundfile as sf

from data.audio import file_record, read_audio, read_audio_file
from data.index import DataWarning


def _caught(call):
    """(result of call(), [warning messages]) with every warning recorded."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def test_nan_and_inf_samples_are_zeroed_and_named(tmp_path):
    """A 20 s file with 0.06 s of NaN and one inf: read as zeros there, with a warning that
    names the file, the count and the first bad time; whole-file and chunk reads alike."""
    samples = (0.1 * np.sin(np.arange(16000 * 20) / 5.0)).astype(np.float32)
    bad = samples.copy()
    bad[16000 * 7:16000 * 7 + 960] = np.nan
    bad[16000 * 12] = -np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, bad, 16000, subtype="FLOAT")
    waveform, messages = _caught(lambda: read_audio_file(str(path)))
    expected = np.where(np.isfinite(bad), bad, 0.0)
    assert np.array_equal(waveform[0].numpy(), expected)
    assert len(messages) == 1
    assert "nan.wav: 961 audio samples are NaN or inf" in messages[0]
    assert "the first at 7.000 s" in messages[0]
    # a training chunk from another copy (warnings are said once per file and process)
    copy = tmp_path / "nan-copy.wav"
    sf.write(copy, bad, 16000, subtype="FLOAT")
    chunk, messages = _caught(lambda: read_audio(file_record(str(copy)), 6.5, 1.0))
    assert np.array_equal(chunk[0].numpy(), expected[16000 * 13 // 2:16000 * 15 // 2])
    assert len(messages) == 1 and "nan-copy.wav: 960 audio samples" in messages[0]


def test_nan_before_resampling_and_averaging_does_not_spread(tmp_path):
    """Stereo 8 kHz with NaN in one channel: zeroed before averaging and resampling, so
    the output stays finite everywhere."""
    t = np.arange(8000 * 4) / 8000
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 200 * t), 0.2 * np.sin(2 * np.pi * 300 * t)],
                      axis=1).astype(np.float32)
    stereo[8000:8100, 1] = np.nan
    path = tmp_path / "stereo-nan.wav"
    sf.write(path, stereo, 8000, subtype="FLOAT")
    waveform, messages = _caught(lambda: read_audio_file(str(path)))
    assert waveform.shape == (1, 64000) and bool(waveform.isfinite().all())
    assert any("stereo-nan.wav: 100 audio samples are NaN or inf" in m
               and "the first at 1.000 s" in m for m in messages)
