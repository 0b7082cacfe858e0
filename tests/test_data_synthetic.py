"""The synthetic audio-visual database: layout, determinism, and that video carries speakers."""

from __future__ import annotations

import numpy as np
import soundfile as sf

import run
from data.synthetic import SLOTS, make_speakers, stable_rng
from data.voice import random_voice, synthesize


def _turns(db, split):
    turns = {}
    for line in (db.root / "rttm" / f"{split}.rttm").read_text().splitlines():
        f = line.split()
        turns.setdefault(f[1], []).append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return turns


def test_layout_and_conversations(synthetic_db):
    for split, uris in synthetic_db.uris.items():
        assert len(uris) == 3
        turns = _turns(synthetic_db, split)
        for uri in uris:
            audio, rate = sf.read(synthetic_db.audio_dir / f"{uri}.wav")
            assert rate == 16000 and audio.shape == (20 * 16000,)
            video = np.load(synthetic_db.video_dir / f"{uri}.npy")
            assert video.shape == (500, 32) and video.dtype == np.float16
            speakers = {label for _, _, label in turns[uri]}
            assert 2 <= len(speakers) <= 5
            # never more than two speakers at once
            times = np.arange(0, 20, 0.01)
            active = sum(((times >= s) & (times < e)).astype(int) for s, e, _ in turns[uri])
            assert active.max() <= 2
        labels = {label for uri in uris for _, _, label in turns[uri]}
        assert all(label.startswith({"train": "tr", "development": "dv",
                                     "test": "ts"}[split]) for label in labels)


def test_same_seed_same_database_other_seed_other(tmp_path):
    from data.synthetic import generate_database

    a = generate_database(tmp_path / "a", files=1, minutes=0.2, esize=16, seed=3).parent
    b = generate_database(tmp_path / "b", files=1, minutes=0.2, esize=16, seed=3).parent
    c = generate_database(tmp_path / "c", files=1, minutes=0.2, esize=16, seed=4).parent
    for rel in ("audio/tr000.wav", "video/dv000.npy", "rttm/test.rttm"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
        assert (a / rel).read_bytes() != (c / rel).read_bytes()


def test_run_py_synth(tmp_path):
    out = tmp_path / "db"
    code = run.main(["synth", "--out", str(out), "--files", "1", "--minutes", "0.2",
                     "--esize", "16", "--seed", "1"])
    assert code == 0 and (out / "database.yml").is_file()
    assert "Synthetic:" in (out / "database.yml").read_text()
    assert run.main(["synth", "--out", str(out), "--esize", "4"]) == 2


def test_run_py_synth_speaker_pool_size(tmp_path, capsys):
    """--pairs/--singles set each split's pool: more files then meet more distinct speakers."""
    def speakers(pairs, singles):
        out = tmp_path / f"db{pairs}_{singles}"
        assert run.main(["synth", "--out", str(out), "--files", "12", "--minutes", "1.2",
                         "--eval-minutes", "0.1", "--esize", "16", "--pairs", str(pairs),
                         "--singles", str(singles)]) == 0
        lines = (out / "rttm" / "train.rttm").read_text().splitlines()
        return {line.split()[7] for line in lines}

    small, large = speakers(1, 1), speakers(10, 10)
    assert len(small) <= 3 < len(large) <= 30
    assert run.main(["synth", "--out", str(tmp_path / "bad"), "--pairs", "0",
                     "--singles", "1"]) == 2
    assert "at least 2 speakers" in capsys.readouterr().out
    assert run.main(["synth", "--out", str(tmp_path / "bad"), "--look-alike-spread",
                     "-0.1"]) == 2
    assert "--look-alike-spread" in capsys.readouterr().out


def test_look_alike_voices_are_identical_by_default():
    pairs = make_speakers(stable_rng(0, "x"), "tr", 7, pairs=3, singles=0)
    for a, b in zip(pairs[::2], pairs[1::2]):
        assert a.voice == b.voice and a.partner == b.label
        assert abs(float(a.face @ b.face)) < 0.99  # the faces still differ


def test_look_alike_voices_are_close_and_others_are_not():
    speakers = make_speakers(stable_rng(0, "x"), "tr", 7, pairs=3, singles=2, spread=0.01)
    by_label = {s.label: s for s in speakers}
    for s in speakers:
        if s.partner:
            other = by_label[s.partner].voice
            assert abs(s.voice.f0_hz / other.f0_hz - 1) < 0.011
            assert abs(s.voice.formant_scale / other.formant_scale - 1) < 0.011
            assert abs(float(s.face @ by_label[s.partner].face)) < 0.99
    voice = random_voice(np.random.default_rng(0))
    wave = synthesize(voice, 2.0, np.random.default_rng(1))
    assert wave.shape == (32000,) and wave.dtype == np.float32
    assert abs(np.sqrt(np.mean(wave ** 2)) - voice.loudness) < 0.2 * voice.loudness


def test_video_mouth_channels_follow_speech(synthetic_db):
    """Frames where the reference has speech show more mouth activity than silent ones."""
    width = synthetic_db.esize // SLOTS
    speech, silence, missing = [], [], 0
    for uri in synthetic_db.uris["train"]:
        video = np.load(synthetic_db.video_dir / f"{uri}.npy").astype(np.float32)
        missing += int(np.isnan(video).any(axis=1).sum())
        mouth = np.nan_to_num(video[:, width - 1::width][:, :SLOTS], nan=0.0).max(axis=1)
        times = (np.arange(len(video)) + 0.5) / 25.0
        active = np.zeros(len(video), dtype=bool)
        for s, e, _ in _turns(synthetic_db, "train")[uri]:
            active |= (times >= s) & (times < e)
        speech.append(mouth[active])
        silence.append(mouth[~active])
    assert np.mean(np.concatenate(speech)) > np.mean(np.concatenate(silence)) + 0.3
    assert missing > 0  # some frames are missing (NaN rows)
