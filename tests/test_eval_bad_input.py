"""run.py eval and infer on bad input: each gets a one-line error naming the file (rc 2) or
a warning naming it, never a traceback or a silent score."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import run
from core import build_model

TINY = dict(lstm={"hidden_size": 16, "num_layers": 1, "bidirectional": True, "dropout": 0.0},
            linear={"hidden_size": 16, "num_layers": 1}, duration_s=5.0)
FAST = ["--step", "0.5", "--batch-size", "8", "--no-progress", "--device", "cpu"]


def _sine(seconds, rate=16000):
    return (0.1 * np.sin(np.arange(int(rate * seconds)) / 5.0)).astype(np.float32)


def _save(folder, model_id="audio", esize=8):
    torch.manual_seed(0)
    model = build_model(model_id, esize=esize, **TINY)
    (folder / "checkpoints").mkdir(parents=True)
    path = folder / "checkpoints" / "best.pt"
    torch.save({"model_state": model.state_dict(), "model_hparams": dict(model.hparams),
                "step": 0, "config": {"model": model_id}}, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("ckpt") / "exp")


def _eval(checkpoint, rttm, audio, out, *extra):
    return run.main(["eval", "--checkpoint", str(checkpoint), "--groundtruths", str(rttm),
                     "--audio", str(audio), "--out", str(out), "--embedding", "none",
                     "--clustering", "oracle", "--plots", "0", *FAST, *extra])


def _one_line_error(capsys, *parts):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for part in parts:
        assert part in err, err
    return err


@pytest.mark.parametrize("line, problem", [
    ("SPEAKER f 1 9.0 abc <NA> <NA> C <NA> <NA>", "bad.rttm line 2: duration 'abc' is not"),
    ("SPEAKER f 1 9.0 -1.0 <NA> <NA> C <NA> <NA>", "bad.rttm line 2: negative duration -1 s"),
])
def test_eval_names_the_rttm_line(checkpoint, tmp_path, capsys, line, problem):
    (tmp_path / "wav").mkdir()
    sf.write(tmp_path / "wav" / "f.wav", _sine(8), 16000)
    (tmp_path / "bad.rttm").write_text("SPEAKER f 1 1.0 3.0 <NA> <NA> A <NA> <NA>\n" + line
                                       + "\n")
    assert _eval(checkpoint, tmp_path / "bad.rttm", tmp_path / "wav", tmp_path / "out") == 2
    _one_line_error(capsys, problem)


def test_eval_on_a_protocol_names_rttm_lines_of_unlisted_files(checkpoint, tmp_path,
                                                               write_database):
    yml = write_database(tmp_path, {"p0": (_sine(8), 16000)}, [("p0", 1.0, 3.0, "A")],
                         name="EvalGhost.SpeakerDiarization.T")
    with open(tmp_path / "ref.rttm", "a") as rttm:
        rttm.write("SPEAKER ghost9 1 0.0 1.0 <NA> <NA> Z <NA> <NA>\n")
    with pytest.warns(UserWarning, match=r"ref\.rttm has lines for 1 file\(s\) that are not "
                                         r"in the test list.*ghost9"):
        status = run.main(["eval", "--checkpoint", str(checkpoint), "--protocol",
                           "EvalGhost.SpeakerDiarization.T", "--database", str(yml),
                           "--out", str(tmp_path / "out"), "--embedding", "none",
                           "--clustering", "oracle", "--plots", "0", *FAST])
    assert status == 0
    assert json.loads((tmp_path / "out" / "report.json").read_text())["files"] == ["p0"]


def test_eval_warns_about_a_truncated_wav(checkpoint, tmp_path):
    (tmp_path / "wav").mkdir()
    path = tmp_path / "wav" / "cut.wav"
    sf.write(path, _sine(12), 16000, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:44 + 16000 * 12])  # half the samples
    (tmp_path / "ref.rttm").write_text("SPEAKER cut 1 1.0 9.0 <NA> <NA> A <NA> <NA>\n")
    with pytest.warns(UserWarning, match=r"cut\.wav: truncated: .* the last 6\.00 s are "
                                         r"missing"):
        assert _eval(checkpoint, tmp_path / "ref.rttm", tmp_path / "wav", tmp_path / "o") == 0


def _broken_npy(path):
    np.save(path, np.ones((500, 8), np.float32))
    path.write_bytes(path.read_bytes()[:1000])  # header says 500 rows; the file holds fewer


@pytest.mark.parametrize("write, problem", [
    (lambda p: np.save(p, np.ones((500, 8), np.float64)),
     "f.npy: video embeddings are float64; expected float16 or float32"),
    (lambda p: np.save(p, np.ones((500, 8), np.int64)), "f.npy: video embeddings are int64"),
    (lambda p: np.save(p, np.array([[None] * 8] * 500, dtype=object), allow_pickle=True),
     "f.npy: Array can't be memory-mapped"),
    (_broken_npy, "f.npy: mmap length is greater than file size"),
])
def test_eval_refuses_bad_video_naming_the_file(tmp_path, capsys, write, problem):
    checkpoint = _save(tmp_path / "late", "late", esize=8)
    (tmp_path / "wav").mkdir()
    (tmp_path / "video").mkdir()
    sf.write(tmp_path / "wav" / "f.wav", _sine(20), 16000)
    write(tmp_path / "video" / "f.npy")
    (tmp_path / "ref.rttm").write_text("SPEAKER f 1 1.0 3.0 <NA> <NA> A <NA> <NA>\n")
    assert _eval(checkpoint, tmp_path / "ref.rttm", tmp_path / "wav", tmp_path / "o",
                 "--video-dir", str(tmp_path / "video")) == 2
    _one_line_error(capsys, problem.split(": ", 1)[1], str(tmp_path / "video" / "f.npy"))


def test_eval_warns_about_video_ten_times_too_short(tmp_path):
    checkpoint = _save(tmp_path / "late", "late", esize=8)
    (tmp_path / "wav").mkdir()
    (tmp_path / "video").mkdir()
    sf.write(tmp_path / "wav" / "f.wav", _sine(20), 16000)
    np.save(tmp_path / "video" / "f.npy", np.ones((50, 8), np.float16))
    (tmp_path / "ref.rttm").write_text("SPEAKER f 1 1.0 3.0 <NA> <NA> A <NA> <NA>\n")
    with pytest.warns(UserWarning, match=r"f\.npy: 50 video frames last 2\.0 s at 25 fps, but "
                                         r"the audio lasts 20\.0 s"):
        assert _eval(checkpoint, tmp_path / "ref.rttm", tmp_path / "wav", tmp_path / "o",
                     "--video-dir", str(tmp_path / "video")) == 0


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo unsafe",))


def _corrupt(folder):
    path = folder / "corrupt.pt"
    path.write_bytes(b"not a checkpoint" * 8)
    return path, "not a torch checkpoint in zip format"


def _unsafe(folder):
    path = folder / "unsafe.pt"
    torch.save({"model_state": _Evil()}, path)
    return path, "refusing to load global 'posix.system'"


def _mismatched(folder):
    path = folder / "mismatched.pt"
    saved = torch.load(_save(folder / "m"), weights_only=True)
    saved["model_state"]["classifier.weight"] = torch.zeros(3, 3)
    torch.save(saved, path)
    return path, "checkpoint does not fit the model; "


@pytest.mark.parametrize("make", [_corrupt, _unsafe, _mismatched])
def test_eval_bad_checkpoint_is_one_line_naming_the_file(tmp_path, capsys, make):
    path, problem = make(tmp_path)
    (tmp_path / "wav").mkdir()
    sf.write(tmp_path / "wav" / "f.wav", _sine(6), 16000)
    (tmp_path / "ref.rttm").write_text("SPEAKER f 1 1.0 3.0 <NA> <NA> A <NA> <NA>\n")
    assert _eval(path, tmp_path / "ref.rttm", tmp_path / "wav", tmp_path / "o") == 2
    _one_line_error(capsys, str(path), problem)


SKELETON = Path(__file__).parent / "fixtures" / "wespeaker_skeleton.bin"


def _infer(checkpoint, audio, out, *extra):
    return run.main(["infer", "--checkpoint", str(checkpoint), "--audio", str(audio),
                     "--out", str(out), "--embedding", str(SKELETON), *FAST, *extra])


@pytest.mark.parametrize("make", [_corrupt, _unsafe, _mismatched])
def test_infer_bad_checkpoint_is_one_line_naming_the_file(tmp_path, capsys, make):
    path, problem = make(tmp_path)
    sf.write(tmp_path / "f.wav", _sine(6), 16000)
    assert _infer(path, tmp_path / "f.wav", tmp_path / "o") == 2
    _one_line_error(capsys, str(path), problem)


def test_infer_goes_on_past_bad_files_and_names_them(checkpoint, tmp_path, capsys):
    """A folder of good and bad files: every good one gets its RTTM, each bad one a line
    naming it, then one line listing them all; rc 2."""
    if not SKELETON.is_file():
        pytest.skip("WeSpeaker fixture missing")
    wav = tmp_path / "wav"
    wav.mkdir()
    sf.write(wav / "a.wav", _sine(6), 16000)
    (wav / "b.wav").write_text("not audio")
    sf.write(wav / "c.wav", np.zeros(0, np.float32), 16000)
    sf.write(wav / "d.wav", _sine(0.03), 16000)
    sf.write(wav / "e f.wav", _sine(6), 16000)
    sf.write(wav / "zñé.wav", _sine(6), 16000)  # non-ASCII works end to end
    assert _infer(checkpoint, wav, tmp_path / "o") == 2
    captured = capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.rttm", "all.rttm",
                                                                 "zñé.rttm"]
    assert "a: " in captured.out and "zñé: " in captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 5, captured.err
    for name, problem in (("b.wav", "cannot read audio"), ("c.wav", "empty audio file"),
                          ("d.wav", "too short: 0.030 s"),
                          ("e f.wav", "the file name holds a space")):
        assert any(f"{wav / name}: {problem}" in line for line in lines), (name, lines)
    assert lines[-1].startswith("run.py infer: 4 of 6 file(s) failed")
    uris = {line.split()[1] for line in (tmp_path / "o" / "all.rttm").read_text(
        encoding="utf-8").splitlines()}
    assert uris <= {"a", "zñé"}


def test_infer_on_one_unreadable_wav_is_one_line(checkpoint, tmp_path, capsys):
    (tmp_path / "bad.wav").write_text("not audio")
    assert _infer(checkpoint, tmp_path / "bad.wav", tmp_path / "o") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert f"{tmp_path / 'bad.wav'}: cannot read audio" in err[0] and len(err) == 2


def test_eval_into_an_earlier_report_keeps_it_aside(checkpoint, tmp_path, capsys):
    (tmp_path / "wav").mkdir()
    sf.write(tmp_path / "wav" / "f.wav", _sine(8), 16000)
    (tmp_path / "ref.rttm").write_text("SPEAKER f 1 1.0 3.0 <NA> <NA> A <NA> <NA>\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("the user's own file stays")
    assert _eval(checkpoint, tmp_path / "ref.rttm", tmp_path / "wav", out) == 0
    first = (out / "report.json").read_text()
    capsys.readouterr()
    assert _eval(checkpoint, tmp_path / "ref.rttm", tmp_path / "wav", out, "--step", "0.25") == 0
    asides = list(out.glob("before-*"))
    assert len(asides) == 1
    assert f"the earlier report in {out} is kept in {asides[0]}" in capsys.readouterr().err
    assert (asides[0] / "report.json").read_text() == first
    assert sorted(p.name for p in asides[0].iterdir()) == [
        "ref.oracle.rttm", "ref.rttm", "report.csv", "report.json", "report.md"]
    assert json.loads((out / "report.json").read_text())["step_ratio"] == 0.25
    assert (out / "mine.txt").is_file() and (out / "ref.rttm").is_file()


@pytest.mark.parametrize("command", ["eval", "infer"])
def test_out_naming_a_file_is_one_line(checkpoint, tmp_path, capsys, command):
    sf.write(tmp_path / "f.wav", _sine(6), 16000)
    (tmp_path / "ref.rttm").write_text("SPEAKER f 1 1.0 3.0 <NA> <NA> A <NA> <NA>\n")
    (tmp_path / "taken").write_text("a file")
    run_it = _eval if command == "eval" else _infer
    audio = tmp_path if command == "eval" else tmp_path / "f.wav"
    args = (tmp_path / "ref.rttm", audio) if command == "eval" else (audio,)
    assert run_it(checkpoint, *args, tmp_path / "taken") == 2
    _one_line_error(capsys, f"--out {tmp_path / 'taken'} is a file")
    assert (tmp_path / "taken").read_text() == "a file"


def test_eval_refuses_empty_and_too_short_audio_before_running(checkpoint, tmp_path, capsys):
    wav = tmp_path / "wav"
    wav.mkdir()
    sf.write(wav / "good.wav", _sine(8), 16000)
    sf.write(wav / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(wav / "tiny.wav", _sine(0.05), 16000)
    sf.write(wav / "spare.wav", np.zeros(0, np.float32), 16000)  # no reference: left out
    (tmp_path / "ref.rttm").write_text("".join(
        f"SPEAKER {u} 1 0.0 0.5 <NA> <NA> A <NA> <NA>\n" for u in ("good", "empty", "tiny")))
    with pytest.warns(UserWarning, match=r"spare\.wav: empty audio file"):
        assert _eval(checkpoint, tmp_path / "ref.rttm", wav, tmp_path / "o") == 2
    err = _one_line_error(capsys, "2 of 4 file(s) cannot be evaluated",
                          f"{wav / 'empty.wav'}: empty audio file (0 samples)",
                          f"{wav / 'tiny.wav'}: too short: 0.050 s")
    assert "good.wav" not in err
    assert not (tmp_path / "o" / "report.json").exists()


def test_eval_with_stereo_44k_and_non_ascii_uris(checkpoint, tmp_path):
    """Stereo 44.1 kHz audio is averaged and resampled with a warning naming the file;
    a non-ASCII uri goes through to the RTTM and the reports."""
    wav = tmp_path / "wav"
    wav.mkdir()
    sf.write(wav / "stéréo.wav", np.stack([_sine(8, 44100), 0.5 * _sine(8, 44100)], axis=1),
             44100)
    (tmp_path / "ref.rttm").write_text("SPEAKER stéréo 1 1.0 3.0 <NA> <NA> Ä <NA> <NA>\n",
                                       encoding="utf-8")
    with pytest.warns(UserWarning, match=r"stéréo\.wav is at 44100 Hz; resampling"):
        assert _eval(checkpoint, tmp_path / "ref.rttm", wav, tmp_path / "o") == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text(encoding="utf-8"))
    assert report["files"] == ["stéréo"]
    assert "| stéréo |" in (tmp_path / "o" / "report.md").read_text(encoding="utf-8")
    assert (tmp_path / "o" / "ref.oracle.rttm").read_text(encoding="utf-8").split()[1] == "stéréo"


def test_eval_scores_nan_audio_as_the_same_file_with_zeros(checkpoint, tmp_path):
    """0.06 s of NaN in a 20 s file: warned naming the file, then scored exactly as the file
    with zeros there (not as silence, not as NaN)."""
    samples = _sine(20)
    samples[16000 * 7:16000 * 7 + 960] = np.nan
    reports = {}
    for name, values in (("nan", samples), ("zeros", np.nan_to_num(samples, nan=0.0))):
        (tmp_path / name).mkdir()
        sf.write(tmp_path / name / "f.wav", values, 16000, subtype="FLOAT")
        (tmp_path / "ref.rttm").write_text("SPEAKER f 1 1.0 9.0 <NA> <NA> A <NA> <NA>\n")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert _eval(checkpoint, tmp_path / "ref.rttm", tmp_path / name,
                         tmp_path / f"o-{name}") == 0
        said = [str(w.message) for w in caught if "NaN or inf" in str(w.message)]
        assert len(said) == (name == "nan")
        assert all(f"{name}/f.wav: 960 audio samples are NaN or inf" in m
                   and "the first at 7.000 s" in m for m in said)
        reports[name] = json.loads((tmp_path / f"o-{name}" / "report.json").read_text())
    assert reports["nan"]["local"] == reports["zeros"]["local"]
    assert reports["nan"]["totals"] == reports["zeros"]["totals"]

