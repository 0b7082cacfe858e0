"""run.py eval / infer / compare on a generated database and a tiny saved checkpoint."""

import argparse
import csv
import json

import pytest
import torch

import run
from core import build_model
from data.synthetic import generate_database

TINY = dict(lstm={"hidden_size": 16, "num_layers": 1, "bidirectional": True, "dropout": 0.0},
            linear={"hidden_size": 16, "num_layers": 1}, duration_s=5.0)
PROTOCOL = "Synthetic.SpeakerDiarization.AV"
PNG = b"\x89PNG\r\n\x1a\n"


def _save(exp, model_id, seed):
    torch.manual_seed(seed)
    model = build_model(model_id, esize=16, **TINY)
    (exp / "checkpoints").mkdir(parents=True)
    torch.save({"model_state": model.state_dict(), "model_hparams": dict(model.hparams),
                "step": 0, "config": {"model": model_id}}, exp / "checkpoints" / "best.pt")
    (exp / "config.json").write_text(json.dumps({"model": model_id}))
    return exp / "checkpoints" / "best.pt"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    yml = generate_database(root / "db", files=1, minutes=0.2, eval_minutes=0.25, esize=16)
    return root, yml


@pytest.mark.slow
def test_eval_then_compare(setup):
    root, yml = setup
    exps = []
    for model_id, name in (("audio", "audio-run"), ("late", "late-run")):
        exp = root / "runs" / name
        checkpoint = _save(exp, model_id, seed=1)
        status = run.main(["eval", "--checkpoint", str(checkpoint), "--protocol", PROTOCOL,
                           "--database", str(yml), "--video-dir", str(root / "db" / "video"),
                           "--esize", "16", "--embedding", "none", "--step", "0.5",
                           "--batch-size", "8", "--no-progress", "--plots", "1"])
        assert status == 0
        report = (exp / "eval" / "report.md").read_text()
        assert "full pipeline skipped: --embedding none" in report
        assert (exp / "eval" / "test.rttm").stat().st_size > 0
        assert (exp / "eval" / "timelines").is_dir()
        exps.append(str(exp))
    out = root / "cmp"
    assert run.main(["compare", *exps, "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "comparison.csv")))
    assert {r["experiment"] for r in rows} == {"audio-run", "late-run"}
    assert {r["collar"] for r in rows} == {"0.0", "0.25"}
    assert {r["fusion"] for r in rows} == {"none (audio only)", "late (after LSTM)"}
    assert (out / "comparison.png").read_bytes()[:8] == PNG
    assert "| audio-run |" in (out / "comparison.md").read_text()


@pytest.mark.slow
def test_evaluate_after_training_uses_best_checkpoint(setup):
    root, yml = setup
    exp = root / "proj" / "trained"
    _save(exp, "audio", seed=2)
    args = argparse.Namespace(cdir=str(root), project="proj", name="trained", protocol=PROTOCOL,
                              database=[str(yml)], video_dir=None, video_fps=25.0, esize=None,
                              groundtruths="test", batch_size=8, collar=0.0,
                              skip_overlap=False, device="cpu", embedding="none", step=0.5,
                              progress=False)
    from eval.cli import evaluate_after_training

    assert evaluate_after_training(args) == 0
    assert (exp / "eval" / "report.csv").is_file()
    assert json.loads((exp / "eval" / "report.json").read_text())["skipped"]["full"]


def test_errors_are_clear(setup, tmp_path, capsys):
    root, yml = setup
    assert run.main(["eval", "--checkpoint", str(tmp_path / "missing.pt"),
                     "--out", str(tmp_path)]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert run.main(["compare", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert run.main(["infer", "--checkpoint", str(_save(tmp_path / "x", "audio", 0)),
                     "--audio", str(root / "db" / "audio"), "--out", str(tmp_path / "o"),
                     "--embedding", "none"]) == 2
    assert "speaker-embedding" in capsys.readouterr().err


@pytest.mark.slow
def test_infer_writes_rttm_with_wespeaker(setup, tmp_path):
    from pathlib import Path

    root, _ = setup
    skeleton = Path(__file__).parent / "fixtures" / "wespeaker_skeleton.bin"
    if not skeleton.is_file():
        pytest.skip("WeSpeaker fixture missing")
    checkpoint = _save(tmp_path / "exp", "audio", 0)
    audio = root / "db" / "audio" / "ts000.wav"
    assert run.main(["infer", "--checkpoint", str(checkpoint), "--audio", str(audio),
                     "--out", str(tmp_path / "o"), "--embedding", str(skeleton),
                     "--step", "0.5", "--no-progress"]) == 0
    assert (tmp_path / "o" / "ts000.rttm").is_file()
    assert (tmp_path / "o" / "all.rttm").is_file()


def test_eval_amp_sets_and_records_the_precision(setup, tmp_path):
    """--amp bf16 runs the segmentation under bf16 autocast on the CPU too, and says so in
    report.json and report.md; the default on the CPU stays float32."""
    root, yml = setup
    checkpoint = _save(tmp_path / "exp", "audio", seed=2)
    common = ["eval", "--checkpoint", str(checkpoint), "--protocol", PROTOCOL,
              "--database", str(yml), "--embedding", "none", "--clustering", "oracle",
              "--step", "0.5", "--batch-size", "8", "--no-progress", "--plots", "0",
              "--device", "cpu"]
    from core.constants import bf16_supported

    reports = {}
    if not bf16_supported(torch.device("cpu")):  # --amp bf16 is refused with a clear error
        assert run.main(common + ["--amp", "bf16", "--out", str(tmp_path / "refused")]) == 2
        pytest.skip("this CPU has no bf16 kernels (oneDNN): only the refusal is checked")
    for amp in ("auto", "bf16"):
        out = tmp_path / amp
        assert run.main(common + ["--amp", amp, "--out", str(out)]) == 0
        reports[amp] = json.loads((out / "report.json").read_text())
        expected = {"auto": "float32", "bf16": "bf16"}[amp]
        assert reports[amp]["precision"] == expected
        assert f"- segmentation precision: {expected}" in (out / "report.md").read_text()
    assert reports["bf16"]["local"] != reports["auto"]["local"]  # bf16 ran, not float32


def test_inference_precision_resolves_amp():
    from eval.inference import inference_precision

    cpu = torch.device("cpu")
    assert inference_precision(cpu, "auto") == "float32"
    assert inference_precision(cpu, "off") == "float32"
    from core.constants import bf16_supported

    if bf16_supported(cpu):
        assert inference_precision(cpu, "bf16") == "bf16"
    else:
        with pytest.raises(ValueError, match="no bf16 kernels"):
            inference_precision(cpu, "bf16")
    with pytest.raises(ValueError, match="amp must be one of"):
        inference_precision(cpu, "fp8")
