"""Bad input at data/'s readers, where train, eval and infer all read: non-finite audio
samples, truncated WAV files, RTTM/UEM lines, and the one rule for video embeddings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf

from data.audio import file_record, read_audio, read_audio_file
from data.index import DataError, DataWarning


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


def _rttm(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


GOOD = ["SPEAKER f 1 1.000 3.000 <NA> <NA> A <NA> <NA>",
        ";; a comment",
        "SPEAKER f 1 5.000 4.000 <NA> <NA> B <NA> <NA>"]


@pytest.mark.parametrize("line, problem", [
    ("SPEAKER f 1 9.000 abc <NA> <NA> C <NA> <NA>", "line 4: duration 'abc' is not a number"),
    ("SPEAKER f 1 9.000 -1.000 <NA> <NA> C <NA> <NA>", "line 4: negative duration -1 s"),
    ("SPEAKER f 1 -2.000 1.000 <NA> <NA> C <NA> <NA>", "line 4: negative start -2 s"),
    ("SPEAKER f 1 nan 1.000 <NA> <NA> C <NA> <NA>", "line 4: start 'nan' is not a finite"),
    ("SPEAKER f 1 9.000", "line 4: 4 fields"),
])
def test_a_bad_rttm_line_names_file_and_line(tmp_path, line, problem):
    from data.references import read_rttm

    path = _rttm(tmp_path / "ref.rttm", GOOD + [line])
    with pytest.raises(DataError, match=rf"ref\.rttm {problem}"):
        read_rttm(path)


def test_good_rttm_and_uem_read_as_pyannote_reads_them(tmp_path):
    from pyannote.database.util import load_rttm, load_uem

    from data.references import read_rttm, read_uem

    rttm = _rttm(tmp_path / "ref.rttm", [GOOD[0], GOOD[2], "SPEAKER g 1 0.5 0.0 <NA> <NA> Z "
                                         "<NA> <NA>", "SPEAKER g 1 2.5 1.25 <NA> <NA> Y <NA> <NA>"])
    ours, theirs = read_rttm(rttm), load_rttm(str(rttm))
    assert sorted(ours) == sorted(theirs) == ["f", "g"]
    for uri in ours:  # the same turns; the zero-length one is left out by both
        turns = [(s, label) for s, _, label in ours[uri].itertracks(yield_label=True)]
        assert turns == [(s, label) for s, _, label in theirs[uri].itertracks(yield_label=True)]
    assert [label for _, _, label in ours["g"].itertracks(yield_label=True)] == ["Y"]
    uem = _rttm(tmp_path / "ref.uem", ["f 1 0.000 10.000", "g 1 1.000 4.000"])
    assert {u: list(t) for u, t in read_uem(uem).items()} == {
        u: list(t) for u, t in load_uem(str(uem)).items()}
    _rttm(uem, ["f 1 4.000 2.000"])
    with pytest.raises(DataError, match=r"ref\.uem line 1: end 2 s is before start 4 s"):
        read_uem(uem)


def _index(yml, name, **kwargs):
    from data import build_index, load_protocol

    return build_index(load_protocol(name, [str(yml)]), "train", database_files=[str(yml)],
                       progress=False, **kwargs)


def test_training_index_refuses_a_negative_duration_with_file_and_line(tmp_path,
                                                                        write_database):
    sine = (0.1 * np.sin(np.arange(16000 * 12) / 5.0), 16000)
    yml = write_database(tmp_path, {"n0": sine}, [("n0", 1.0, 3.0, "A"), ("n0", 6.0, 4.0, "B")],
                         name="NegDur.SpeakerDiarization.T")
    with pytest.raises(DataError, match=r"ref\.rttm line 2: negative duration -2 s"):
        _index(yml, "NegDur.SpeakerDiarization.T")


def test_uem_lines_for_unlisted_files_are_named(tmp_path, write_database):
    sine = (0.1 * np.sin(np.arange(16000 * 12) / 5.0), 16000)
    yml = write_database(tmp_path, {"u0": sine}, [("u0", 1.0, 3.0, "A")],
                         uem=[("u0", 0.0, 12.0), ("phantom3", 0.0, 5.0)],
                         name="UemExtra.SpeakerDiarization.T")
    with pytest.warns(DataWarning, match=r"ref\.uem has lines for 1 file\(s\) that are not in "
                                         r"the train list.*phantom3"):
        _index(yml, "UemExtra.SpeakerDiarization.T")


def _truncated_wav(path, seconds=20):
    """A 16 kHz PCM_16 WAV whose header promises `seconds` but whose file holds half."""
    sf.write(path, (0.1 * np.sin(np.arange(16000 * seconds) / 5.0)).astype(np.float32), 16000,
             subtype="PCM_16")
    content = path.read_bytes()
    path.write_bytes(content[:44 + 16000 * seconds])  # header + half the 2-byte samples
    return path


def test_a_truncated_wav_is_named_with_what_is_missing(tmp_path):
    from data.audio_header import read_header

    path = _truncated_wav(tmp_path / "cut.wav")
    header = read_header(path)
    assert (header.num_samples, header.missing_samples) == (160000, 160000)
    waveform, messages = _caught(lambda: read_audio_file(str(path)))
    assert waveform.shape == (1, 160000)
    assert len(messages) == 1 and "cut.wav: truncated: its header promises 320000 samples " \
        "(20.00 s) but the file holds 160000 (10.00 s); the last 10.00 s are missing" in messages[0]
    whole = tmp_path / "whole.wav"  # a complete file, and one written as a stream
    sf.write(whole, np.zeros(16000, dtype=np.float32), 16000, subtype="PCM_16")
    assert read_header(whole).missing_samples == 0
    _, messages = _caught(lambda: read_audio_file(str(whole)))
    assert messages == []


def test_training_index_reports_a_truncated_wav(tmp_path, write_database):
    sine = (0.1 * np.sin(np.arange(16000 * 20) / 5.0), 16000)
    yml = write_database(tmp_path, {"tr0": sine}, [("tr0", 1.0, 3.0, "A")],
                         name="Trunc.SpeakerDiarization.T")
    _truncated_wav(tmp_path / "audio" / "tr0.wav")
    index, messages = _caught(lambda: _index(yml, "Trunc.SpeakerDiarization.T"))
    assert index[0].num_samples == 160000
    assert any("tr0.wav: truncated" in m and "last 10.00 s are missing" in m for m in messages)
    assert any("tr0.wav: truncated" in p for p in index.problems)


def _video_database(tmp_path, write_database, name, video):
    sine = (0.1 * np.sin(np.arange(16000 * 20) / 5.0), 16000)
    yml = write_database(tmp_path, {"v0": sine}, [("v0", 1.0, 3.0, "A")], name=name)
    (tmp_path / "video").mkdir()
    np.save(tmp_path / "video" / "v0.npy", video)
    return yml


@pytest.mark.parametrize("dtype", [np.float64, np.int32])
def test_video_of_another_dtype_is_refused_alike_by_train_and_eval(tmp_path, write_database,
                                                                  dtype):
    from data.video import read_video_file

    name = f"Dtype{np.dtype(dtype).name}.SpeakerDiarization.T"
    yml = _video_database(tmp_path, write_database, name, np.ones((500, 8), dtype=dtype))
    problem = rf"v0\.npy: video embeddings are {np.dtype(dtype).name}; expected float16 or float32"
    with pytest.raises(DataError, match=problem):
        _index(yml, name, video_dir=tmp_path / "video")
    with pytest.raises(DataError, match=problem):
        read_video_file(str(tmp_path / "video" / "v0.npy"), esize=8, duration_s=20.0)


@pytest.mark.parametrize("frames, video_s", [(50, "2.0"), (5000, "200.0")])
def test_video_ten_times_too_short_or_long_is_warned_alike_by_train_and_eval(
        tmp_path, write_database, frames, video_s):
    from data.video import read_video_file

    name = f"Frames{frames}.SpeakerDiarization.T"
    yml = _video_database(tmp_path, write_database, name, np.ones((frames, 8), np.float16))
    expected = (f"v0.npy: {frames} video frames last {video_s} s at 25 fps, but the audio "
                "lasts 20.0 s")
    index, messages = _caught(lambda: _index(yml, name, video_dir=tmp_path / "video"))
    assert any(expected in m for m in messages) and any(expected in p for p in index.problems)
    _, messages = _caught(lambda: read_video_file(str(tmp_path / "video" / "v0.npy"), 8,
                                                  duration_s=20.0, fps=25.0))
    assert len(messages) == 1 and expected in messages[0]
    # what the synthetic database and most real data hold: a second or so of difference
    np.save(tmp_path / "video" / "near.npy", np.ones((520, 8), np.float16))
    _, messages = _caught(lambda: read_video_file(str(tmp_path / "video" / "near.npy"), 8,
                                                  duration_s=20.0))
    assert messages == []
