"""Protocol loading, the file index and its cache, and every bad input of the issue."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from data import (
    DataError,
    DataWarning,
    build_index,
    data_summary,
    load_protocol,
    make_train_loader,
    read_audio,
    read_chunk,
    read_video,
)
from data.protocol import ProtocolError


def _index(yml, name, split="train", **kwargs):
    kwargs.setdefault("progress", False)
    return build_index(load_protocol(name, [str(yml)]), split, database_files=[str(yml)],
                       **kwargs)


def test_protocol_from_argument_and_environment(synthetic_db, monkeypatch):
    protocol = load_protocol(synthetic_db.protocol, [str(synthetic_db.database)])
    files = list(protocol.development())
    assert [f["uri"] for f in files] == synthetic_db.uris["development"]
    assert str(files[0]["audio"]).endswith(".wav")
    monkeypatch.setenv("PYANNOTE_DATABASE_CONFIG", str(synthetic_db.database))
    assert load_protocol(synthetic_db.protocol) is not None
    with pytest.raises(ProtocolError, match="Nope.SpeakerDiarization.X"):
        load_protocol("Nope.SpeakerDiarization.X", [str(synthetic_db.database)])
    with pytest.raises(ProtocolError, match="missing.yml"):
        load_protocol(synthetic_db.protocol, ["missing.yml"])


def test_index_matches_rttm_and_headers(synthetic_db):
    index = _index(synthetic_db.database, synthetic_db.protocol,
                   video_dir=synthetic_db.video_dir)
    assert [r.uri for r in index] == synthetic_db.uris["train"]
    assert index.esize == synthetic_db.esize
    rttm = (synthetic_db.root / "rttm" / "train.rttm").read_text().splitlines()
    record = index[0]
    lines = [line.split() for line in rttm if line.split()[1] == record.uri]
    expected = sorted((float(f[3]), float(f[3]) + float(f[4]), f[7]) for f in lines)
    got = sorted((s, e, record.speakers[k]) for (s, e), k in zip(record.turns,
                                                                 record.turn_speakers))
    assert np.allclose([g[:2] for g in got], [e[:2] for e in expected], atol=1e-6)
    assert [g[2] for g in got] == [e[2] for e in expected]
    assert record.sample_rate == 16000 and record.channels == 1
    assert record.num_samples == 20 * 16000 and record.video_frames == 500
    assert index[1].annotated.shape == (2, 2)  # the file with an unannotated gap
    summary = data_summary(index, duration_s=10.0)
    assert "3 files" in summary and "0 without video" in summary
    assert index[1].uri in summary  # no 10 s region: reported


def test_cache_is_reused_and_rebuilt_when_inputs_change(tmp_path, write_database, monkeypatch):
    sine = (0.1 * np.sin(np.arange(16000 * 12) / 5.0), 16000)
    yml = write_database(tmp_path, {"c0": sine}, [("c0", 1.0, 3.0, "A")],
                         name="Cache.SpeakerDiarization.T")
    first = _index(yml, "Cache.SpeakerDiarization.T", cache_dir=tmp_path / "exp")
    assert len(list((tmp_path / "exp").glob("index-train-*.npz"))) == 1
    import data.index

    def fail(*args, **kwargs):
        raise AssertionError("rebuilt instead of reused")

    monkeypatch.setattr(data.index, "_records", fail)
    again = _index(yml, "Cache.SpeakerDiarization.T", cache_dir=tmp_path / "exp")
    assert np.array_equal(again.turns, first.turns)
    monkeypatch.undo()
    (tmp_path / "ref.rttm").write_text("SPEAKER c0 1 2.000 4.000 <NA> <NA> B <NA> <NA>\n")
    changed = _index(yml, "Cache.SpeakerDiarization.T", cache_dir=tmp_path / "exp")
    assert changed.turns.tolist() == [[2.0, 6.0]] and changed[0].speakers == ("B",)
    assert len(list((tmp_path / "exp").glob("index-train-*.npz"))) == 2


def _av_database(tmp_path, write_database, name, uri="v0", seconds=12):
    audio = {uri: (0.1 * np.sin(np.arange(16000 * seconds) / 7.0), 16000)}
    return write_database(tmp_path, audio, [(uri, 1.0, 5.0, "A")], name=name)


def test_missing_video_is_masked_warned_counted_or_required(tmp_path, write_database):
    yml = _av_database(tmp_path, write_database, "MissV.SpeakerDiarization.T")
    (tmp_path / "video").mkdir()
    with pytest.warns(DataWarning, match="v0: no video embeddings"):
        index = _index(yml, "MissV.SpeakerDiarization.T", video_dir=tmp_path / "video", esize=8)
    assert "1 without video" in data_summary(index)
    chunk = read_chunk(index[0], 0.0, 10.0, esize=8)
    assert chunk["video"].shape == (250, 8) and not chunk["video_mask"].any()
    with pytest.raises(DataError, match="v0"):
        _index(yml, "MissV.SpeakerDiarization.T", video_dir=tmp_path / "video",
               require_video=True)


def test_wrong_embedding_size_names_file_shape_and_esize(tmp_path, write_database):
    yml = _av_database(tmp_path, write_database, "Esize.SpeakerDiarization.T")
    (tmp_path / "video").mkdir()
    np.save(tmp_path / "video" / "v0.npy", np.zeros((300, 16), dtype=np.float16))
    with pytest.raises(DataError, match=r"v0\.npy: video embeddings have size 16, but the "
                                        r"model takes esize 384 \(shape \(300, 16\)\)"):
        _index(yml, "Esize.SpeakerDiarization.T", video_dir=tmp_path / "video", esize=384)


def test_nan_rows_and_short_embeddings_are_masked(tmp_path, write_database):
    yml = _av_database(tmp_path, write_database, "Nan.SpeakerDiarization.T")
    (tmp_path / "video").mkdir()
    video = np.ones((200, 4), dtype=np.float32)  # 8 s of video for 12 s of audio
    video[10] = np.nan
    video[11, 2] = np.inf
    np.save(tmp_path / "video" / "v0.npy", video)
    index = _index(yml, "Nan.SpeakerDiarization.T", video_dir=tmp_path / "video")
    frames, mask = read_video(index[0], 0.0, 10.0, 25.0)
    assert frames.shape == (250, 4) and torch.isfinite(frames).all()
    assert mask[:10].all() and not mask[10] and not mask[11] and mask[12:200].all()
    assert not mask[200:].any() and frames[200:].abs().sum() == 0
    # a chunk starting at 2 s: file frame 50 is chunk frame 0
    frames, mask = read_video(index[0], 2.0, 10.0, 25.0)
    assert mask[:150].all() and not mask[150:].any()


def test_rttm_lines_for_unlisted_files_are_named(tmp_path, write_database):
    yml = _av_database(tmp_path, write_database, "Extra.SpeakerDiarization.T")
    with open(tmp_path / "ref.rttm", "a") as rttm:
        rttm.write("SPEAKER ghost7 1 0.000 1.000 <NA> <NA> Z <NA> <NA>\n")
    with pytest.warns(DataWarning, match="ghost7"):
        _index(yml, "Extra.SpeakerDiarization.T")


def test_empty_and_short_files_are_reported_not_sampled(tmp_path, write_database):
    audio = {"ok": (0.1 * np.sin(np.arange(16000 * 12) / 3.0), 16000),
             "short": (0.1 * np.ones(16000 * 3), 16000),
             "empty": (np.zeros(0), 16000)}
    rttm = [("ok", 0.5, 4.0, "A"), ("short", 0.5, 2.0, "B"), ("empty", 0.0, 1.0, "C")]
    yml = write_database(tmp_path, audio, rttm, name="Short.SpeakerDiarization.T")
    index = _index(yml, "Short.SpeakerDiarization.T")
    summary = data_summary(index, duration_s=10.0)
    assert "empty: empty audio file" in summary and "short" in summary
    loader = make_train_loader(index, duration_s=10.0, batch_size=4, seed=0,
                               batches_per_epoch=3, num_workers=1)
    uris = {u for batch in loader for u in batch["uri"]}
    assert uris == {"ok"}
    assert read_audio(index.find("empty"), 0.0, 1.0).abs().sum() == 0


def test_stereo_is_averaged_and_other_rates_resampled(tmp_path, write_database):
    t = np.arange(44100 * 11) / 44100
    left, right = np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 440 * t)
    audio = {"st": (0.5 * np.stack([left, right], axis=1), 44100)}
    yml = write_database(tmp_path, audio, [("st", 1.0, 2.0, "A")],
                         name="Stereo.SpeakerDiarization.T")
    index = _index(yml, "Stereo.SpeakerDiarization.T")
    assert index[0].channels == 2 and index[0].sample_rate == 44100
    assert any("averaged to mono" in p for p in index.problems)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wave = read_audio(index[0], 2.0, 5.0)
    messages = " ".join(str(w.message) for w in caught)
    assert "44100 Hz" in messages and "st" in messages
    assert wave.shape == (1, 80000)
    expected = 0.375 * np.sin(2 * np.pi * 440 * (2.0 + np.arange(80000) / 16000))
    assert np.abs(wave[0, 1000:-1000].numpy() - expected[1000:-1000]).max() < 0.01
    tail = read_audio(index[0], 10.0, 2.0)  # past the end: zero-padded
    assert tail.shape == (1, 32000) and tail[0, 17000:].abs().max() == 0


def test_non_ascii_uri_end_to_end(tmp_path, write_database):
    uri = "trñ00"
    audio = {uri: (0.1 * np.sin(np.arange(16000 * 12) / 4.0), 16000)}
    yml = write_database(tmp_path, audio, [(uri, 1.0, 4.0, "Ä")],
                         uem=[(uri, 0.0, 12.0)], name="Ünï.SpeakerDiarization.T")
    (tmp_path / "video").mkdir()
    np.save(tmp_path / "video" / f"{uri}.npy", np.ones((300, 8), dtype=np.float16))
    index = _index(yml, "Ünï.SpeakerDiarization.T", video_dir=tmp_path / "video",
                   cache_dir=tmp_path / "exp")
    index = _index(yml, "Ünï.SpeakerDiarization.T", video_dir=tmp_path / "video",
                   cache_dir=tmp_path / "exp")  # through the cache too
    assert index[0].uri == uri and index[0].speakers == ("Ä",)
    loader = make_train_loader(index, duration_s=10.0, batch_size=2, seed=0,
                               batches_per_epoch=1, num_workers=1)
    batch = next(iter(loader))
    assert batch["uri"] == [uri, uri] and batch["video_mask"].all()
    assert batch["target"].sum() > 0
