"""The synthetic database with LibriSpeech speech: disjoint splits from the right subsets,
an honest reference, at most two speakers at once, determinism, and the synthetic fallback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import run
from data.real_speech import (
    SUBSETS,
    Reading,
    RealVoice,
    default_speech,
    load_readers,
    resolve_speech,
    speech_runs,
)
from data.synthetic import generate_database

LIBRISPEECH = default_speech()
needs_librispeech = pytest.mark.skipif(
    LIBRISPEECH == "synthetic",
    reason="no LibriSpeech at ../shared/real/librispeech (the demo's real speech)")


def _rttm(root: Path, split: str):
    turns = {}
    for line in (root / "rttm" / f"{split}.rttm").read_text().splitlines():
        f = line.split()
        turns.setdefault(f[1], []).append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return turns


def _uem(root: Path, split: str):
    regions = {}
    for line in (root / "uem" / f"{split}.uem").read_text().splitlines():
        f = line.split()
        regions.setdefault(f[0], []).append((float(f[2]), float(f[3])))
    return regions


@pytest.fixture(scope="module")
def real_db(tmp_path_factory):
    """`run.py synth` with its default speech: LibriSpeech, 2 files of 30 s / 18 s a split."""
    if LIBRISPEECH == "synthetic":
        pytest.skip("no LibriSpeech at ../shared/real/librispeech")
    root = tmp_path_factory.mktemp("real_db")
    assert run.main(["synth", "--out", str(root), "--files", "2", "--minutes", "1",
                     "--eval-minutes", "0.6", "--esize", "16", "--seed", "5"]) == 0
    return root


@needs_librispeech
def test_splits_share_no_reader_and_come_from_their_subsets(real_db):
    settings = json.loads((real_db / "synthetic.json").read_text())
    assert settings["speech_source"] == "librispeech"
    corpus = Path(settings["speech"])
    ids = {}
    for split, pool in settings["speakers"].items():
        ids[split] = {s["librispeech_id"] for s in pool}
        assert len(ids[split]) == len(pool) >= 2
        subset = corpus / SUBSETS[split]
        for speaker in pool:
            assert speaker["subset"] == subset.name
            assert list(subset.rglob(f"{speaker['librispeech_id']}-*.flac")), speaker
        labels = {label for turns in _rttm(real_db, split).values() for *_, label in turns}
        assert labels and labels <= {s["label"] for s in pool}
    assert not ids["train"] & ids["development"]
    assert not (ids["train"] | ids["development"]) & ids["test"]
    assert settings["speakers"]["test"][0]["subset"] == "librispeech_test-other"
    # the train/development split of train-clean-100 is fixed: every reader, once
    train = {r.reader_id for r in load_readers(LIBRISPEECH, "train")}
    dev = {r.reader_id for r in load_readers(LIBRISPEECH, "development")}
    every = {p.name.split("-")[0]
             for p in (corpus / SUBSETS["train"]).rglob("*.flac")}
    assert not train & dev and train | dev == every and len(dev) > 10
    # default pools: the whole split; partners are two readers of the same sex
    assert ids["train"] == train and ids["development"] == dev
    for pool in settings["speakers"].values():
        sex = {s["label"]: s["sex"] for s in pool}
        partnered = [s for s in pool if s["partner"]]
        assert partnered and all(sex[s["partner"]] == s["sex"] for s in partnered)


def _honest(root: Path, split: str, shift_s: float = 0.0) -> bool:
    """Outside the reference (annotated, >= 0.1 s from any turn) the wav holds no speech
    energy (98th percentile of 20 ms frames 15 dB below the speech level: the 90th
    percentile of frames inside), and most frames inside stand above the noise floor."""
    inside_all, outside_all, above = [], [], []
    for uri, turns in _rttm(root, split).items():
        audio, rate = sf.read(root / "audio" / f"{uri}.wav")
        hop = rate // 50
        n = len(audio) // hop
        db = 10 * np.log10(np.mean(audio[:n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
        t = (np.arange(n) + 0.5) / 50
        inside, near, annotated = (np.zeros(n, dtype=bool) for _ in range(3))
        for lo, hi in _uem(root, split)[uri]:
            annotated |= (t >= lo + 0.1) & (t < hi - 0.1)
        for start, end, _ in turns:
            inside |= (t >= start + shift_s) & (t < end + shift_s)
            near |= (t >= start + shift_s - 0.1) & (t < end + shift_s + 0.1)
        level = np.percentile(db[inside], 90)
        outside = ~near & annotated
        inside_all.append(db[inside & annotated] - level)
        outside_all.append(db[outside] - level)
        above.append(db[inside & annotated] > np.median(db[outside]) + 6.0)
    quiet = np.percentile(np.concatenate(outside_all), 98) < -15.0
    return bool(quiet and np.mean(np.concatenate(above)) > 0.7)


@needs_librispeech
def test_reference_turns_are_where_the_speech_energy_is(real_db):
    for split in ("train", "development", "test"):
        assert _honest(real_db, split), split
        assert not _honest(real_db, split, shift_s=0.3), split  # the check can fail


@needs_librispeech
def test_never_more_than_two_speakers_at_once(real_db):
    for split in ("train", "development", "test"):
        for uri, turns in _rttm(real_db, split).items():
            assert 2 <= len({label for *_, label in turns}) <= 5
            times = np.arange(0, 30, 0.005)
            active = sum(((times >= s) & (times < e)).astype(int) for s, e, _ in turns)
            assert 1 <= active.max() <= 2, uri


@needs_librispeech
def test_turns_continue_the_reading_and_keep_the_loudness():
    reader = max(load_readers(LIBRISPEECH, "test"), key=lambda r: len(r.utterances))
    reading = Reading(RealVoice(reader, 0.08), np.random.default_rng(0))
    levels = []
    for _ in range(12):
        utterance, frame = reading.utterance, reading.frame
        cut = reading.next_turn(2.0, 6.0)
        assert 0.0 < cut.speech_s <= 6.0 and cut.regions[0][0] == 0.0
        assert abs(cut.regions[-1][1] - cut.speech_s) < 1e-9
        assert cut.lead_s + cut.speech_s <= len(cut.audio) / 16000 <= (
            cut.lead_s + cut.speech_s + 0.21)  # at most 0.2 s of quiet after the speech
        assert (reading.utterance, reading.frame) != (utterance, frame)  # read on
        # the speech an energy VAD finds in the placed audio starts after the lead
        db = 10 * np.log10(np.mean(cut.audio[:len(cut.audio) // 160 * 160].reshape(
            -1, 160) ** 2, axis=1) + 1e-12)
        runs = speech_runs(db, 20 * np.log10(0.08) - 12.0)
        assert len(runs) and runs[0][0] / 100 >= cut.lead_s - 0.03
        loud = db > 20 * np.log10(0.08) - 12.0
        levels.append(np.sqrt(np.mean(10 ** (db[loud] / 10))))
    assert 0.06 < float(np.median(levels)) < 0.11


@needs_librispeech
def test_same_seed_same_database_other_seed_other(tmp_path):
    def make(name, seed):
        return generate_database(tmp_path / name, files=1, minutes=0.3, esize=16, seed=seed,
                                 speech=LIBRISPEECH).parent

    a, b, c = make("a", 3), make("b", 3), make("c", 4)
    for rel in ("audio/tr000.wav", "video/dv000.npy", "rttm/test.rttm", "synthetic.json"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    for rel in ("audio/tr000.wav", "rttm/test.rttm"):
        assert (a / rel).read_bytes() != (c / rel).read_bytes()


def test_synthetic_voices_when_librispeech_is_absent(tmp_path, capsys):
    missing = tmp_path / "no" / "librispeech"
    assert resolve_speech(None, corpus_dir=missing) == "synthetic"
    assert resolve_speech("auto", corpus_dir=missing) == "synthetic"
    with pytest.raises(ValueError, match="librispeech_test-other"):
        resolve_speech(str(missing))
    yml = generate_database(tmp_path / "db", files=1, minutes=0.2, esize=16,
                            speech=resolve_speech(None, corpus_dir=missing))
    settings = json.loads((yml.parent / "synthetic.json").read_text())
    assert settings["speech_source"] == "synthetic" and settings["pairs"] is None
    assert len(settings["speakers"]["train"]) == 12  # 4 pairs + 4 singles
    assert all(s["label"].startswith("tr_spk") for s in settings["speakers"]["train"])
    assert run.main(["synth", "--out", str(tmp_path / "x"), "--speech", str(missing)]) == 2
    assert "--speech" in capsys.readouterr().out
    assert run.main(["synth", "--out", str(tmp_path / "s"), "--files", "1", "--minutes",
                     "0.2", "--esize", "16", "--speech", "synthetic"]) == 0
    assert "synthetic voices" in capsys.readouterr().out
    saved = json.loads((tmp_path / "s" / "synthetic.json").read_text())
    assert saved["speech_source"] == "synthetic"
