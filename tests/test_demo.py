"""run.py demo end to end, in small: database, two models, evaluation, comparison, reuse."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--models", "0,8", "--steps", "2", "--pretrain-steps", "2", "--batch-size", "2",
         "--val-every", "2", "--files", "2", "--minutes", "0.5", "--eval-minutes", "0.5",
         "--esize", "16"]


def demo_args(*argv: str) -> argparse.Namespace:
    """`run.py demo`'s flags parsed, as main() gets them."""
    import demo

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    return parser.parse_args(list(argv))


def run_demo(out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "run.py", "demo", "--out", str(out), *SMALL],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_demo_trains_evaluates_compares_and_reuses(tmp_path):
    out = tmp_path / "démo"
    first = run_demo(out)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (out / "db" / "database.yml").is_file()
    rows = list(csv.DictReader(open(out / "comparison.csv", encoding="utf-8")))
    assert {r["experiment"] for r in rows} == {"model0", "model8", "model8-novideo"}
    assert {r["mode"] for r in rows} >= {"oracle"}
    for row in rows:
        assert 0.0 <= float(row["der"]) < 1000.0
    for name in ("model0", "model8"):
        run = out / "runs" / name
        assert (run / "eval" / "report.json").is_file()
        assert list((run / "tensorboard").glob("events.out.tfevents.*"))
        assert (run / "checkpoints" / "last.pt").is_file()
    assert "| model8 | 8 | hybrid" in first.stdout
    # the fusion model is evaluated a second time, the same checkpoint without its video
    with_video = json.loads((out / "runs" / "model8" / "eval" / "report.json").read_text())
    ablation = json.loads((out / "runs" / "model8-novideo" / "report.json").read_text())
    assert with_video["video_dir"] and Path(with_video["video_dir"]).name == "video"
    assert ablation["video_dir"] is None
    assert ablation["model"] == with_video["model"]
    assert "| model8-novideo | 8 | hybrid" in first.stdout
    # both compared models start from the pretrained audio model's last weights, and model
    # 8's video path starts as the identity: at their step 0 they validate as the pretrained
    # model did at its last step (2)
    assert (out / "runs" / "pretrain" / "checkpoints" / "last.pt").is_file()
    assert not (out / "runs" / "pretrain" / "eval").exists()

    def validation(name, step):
        log = (out / "runs" / name / "train.log").read_text()
        return re.search(rf"validation step {step}: DER +([0-9.]+)% .* loss ([0-9.]+)",
                         log).groups()

    assert validation("model0", 0) == validation("model8", 0) == validation("pretrain", 2)

    stamp = (out / "runs" / "model0" / "checkpoints" / "last.pt").stat().st_mtime_ns
    second = run_demo(out)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "reusing the synthetic database" in second.stdout
    assert (out / "runs" / "model0" / "checkpoints" / "last.pt").stat().st_mtime_ns == stamp


def test_demo_rejects_unknown_model_ids(tmp_path):
    result = subprocess.run([sys.executable, "run.py", "demo", "--out", str(tmp_path),
                             "--models", "0,5"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "--models" in result.stderr and "'0,5'" in result.stderr


def test_demo_rejects_a_bad_database_setting(tmp_path):
    result = subprocess.run([sys.executable, "run.py", "demo", "--out", str(tmp_path),
                             "--look-alike-spread", "1.5"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert "--look-alike-spread" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_runs_on_a_database_that_is_generated_again_are_moved_aside(tmp_path, capsys):
    import demo

    tiny = ["--files", "1", "--minutes", "0.2", "--eval-minutes", "0.2", "--esize", "8"]
    out = tmp_path / "demo"
    demo.database(out, demo_args(*tiny))
    (out / "runs" / "model0").mkdir(parents=True)
    (out / "runs" / "model0" / "train.log").write_text("trained on the first database\n")

    demo.database(out, demo_args(*tiny))  # same settings: reused, runs stay
    assert (out / "runs" / "model0" / "train.log").is_file()

    demo.database(out, demo_args(*tiny, "--look-alike-spread", "0.01"))
    assert not (out / "runs").exists()
    kept = list(out.glob("runs-before-*"))
    assert len(kept) == 1
    assert (kept[0] / "model0" / "train.log").read_text() == "trained on the first database\n"
    assert "moved to" in capsys.readouterr().out


@pytest.mark.parametrize("extra, lr, lr_pretrained, scheduler", [
    ([], 1e-3, 1e-4, "constant"),
    (["--lr", "0.003", "--scheduler", "cosine", "--lr-pretrained", "0.002"], 3e-3, 2e-3,
     "cosine")])
def test_demo_settings_reach_every_models_training_config(tmp_path, extra, lr, lr_pretrained,
                                                          scheduler):
    import demo
    from train import cli as train_cli
    from train.config import Config

    args = demo_args("--steps", "7", *extra)
    yml = tmp_path / "db" / "database.yml"
    start_from = tmp_path / "runs" / "pretrain" / "checkpoints" / "last.pt"
    train_parser = argparse.ArgumentParser()
    train_cli.add_arguments(train_parser)
    for model_id, start in (("0", None), ("6", start_from)):
        config = Config.from_args(train_parser.parse_args(
            demo.train_argv(f"model{model_id}", model_id, 7, yml, tmp_path, args, start)))
        assert config.lr == pytest.approx(lr)
        assert config.scheduler == scheduler
        assert config.max_steps == 7
        assert config.finetune == (start is not None)
        if start is None:  # from scratch: every part at --lr
            assert config.lstm_hidden == 64 and config.lr_pretrained is None
        else:  # fine-tuning: the pretrained parts at --lr-pretrained
            assert config.checkpoint == str(start) and config.lstm_hidden is None
            assert config.lr_pretrained == pytest.approx(lr_pretrained)
        assert config.experiment_dir == tmp_path / "runs" / f"model{model_id}"


def test_runs_trained_with_other_settings_are_moved_aside(tmp_path, capsys):
    import demo

    out = tmp_path / "demo"
    demo.check_run_settings(out, demo_args())
    (out / "runs" / "model0").mkdir(parents=True)

    demo.check_run_settings(out, demo_args("--steps", "400"))  # more steps: kept
    assert (out / "runs" / "model0").is_dir()

    demo.check_run_settings(out, demo_args("--lr", "0.003"))
    assert not (out / "runs" / "model0").exists()
    kept = list(out.glob("runs-before-*"))
    assert sorted(p.name for p in kept[0].iterdir()) == ["demo.json", "model0"]
    assert "other settings (lr)" in capsys.readouterr().out
    assert '"lr": 0.003' in (out / "runs" / "demo.json").read_text()


def test_runs_without_a_settings_record_are_moved_aside(tmp_path, capsys):
    import demo

    out = tmp_path / "demo"
    (out / "runs" / "model0").mkdir(parents=True)  # a demo folder from before the record
    demo.check_run_settings(out, demo_args())
    assert len(list(out.glob("runs-before-*/model0"))) == 1
    assert "no record of their settings" in capsys.readouterr().out
