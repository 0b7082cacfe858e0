"""run.py demo end to end, in small: database, segmentation-3.0 fine-tuned into two models,
threshold tuned on development, evaluation (oracle and CAM++), comparison, reuse."""

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
SMALL = ["--models", "0,8", "--steps", "2", "--batch-size", "2", "--val-every", "2",
         "--files", "2", "--minutes", "0.5", "--eval-minutes", "0.5", "--esize", "16",
         "--thresholds", "0.6,0.8"]


def _weights_missing():
    from core.weights import missing

    return missing(["pyannote/segmentation-3.0", "campplus"])


needs_weights = pytest.mark.skipif(bool(_weights_missing()),
                                   reason="segmentation-3.0 / CAM++ not in the weights cache "
                                          "(make weights)")


def demo_args(*argv: str) -> argparse.Namespace:
    """`run.py demo`'s flags parsed, as main() gets them."""
    import demo

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    return parser.parse_args(list(argv))


def run_demo(out: Path, *extra: str, env=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "run.py", "demo", "--out", str(out), *SMALL, *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@needs_weights
def test_demo_trains_evaluates_compares_and_reuses(tmp_path):
    out = tmp_path / "démo"
    first = run_demo(out)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (out / "db" / "database.yml").is_file()
    rows = list(csv.DictReader(open(out / "comparison.csv", encoding="utf-8")))
    assert {r["experiment"] for r in rows} == {"step0", "model0", "model8", "model8-novideo"}
    modes = {(r["experiment"], r["mode"], float(r["collar"])) for r in rows}
    for name in ("step0", "model0", "model8"):  # oracle and the full pipeline, both collars
        assert {(name, m, c) for m in ("oracle", "full") for c in (0.0, 0.25)} <= modes
    assert ("model8-novideo", "full", 0.0) not in modes
    assert "LibriSpeech" in first.stdout or "synthetic voices" in first.stdout
    # the threshold comes from the development sweep and is the one the test split used
    sweep = json.loads((out / "runs" / "threshold" / "threshold.json").read_text())
    assert sweep["split"] == "development"
    assert [r["threshold"] for r in sweep["thresholds"]] == [0.6, 0.8]
    assert f"clustering threshold {sweep['best']:g}" in first.stdout
    for name in ("step0", "model0-eval"):
        log = (out / "runs" / f"{name}.log").read_text()
        assert "full " in log and "skipped" not in log
    assert "--threshold" in (out / "runs" / "step0" / "demo-eval.json").read_text()
    assert re.search(r"finished in \d+ s wall, \d+ s CPU", first.stdout)
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
    # both compared models start from segmentation-3.0 (no pretraining here), and model 8's
    # video path starts as the identity: at their step 0 they validate the same
    assert not (out / "runs" / "pretrain").exists()

    def validation(name, step):
        log = (out / "runs" / name / "train.log").read_text()
        return re.search(rf"validation step {step}: DER +([0-9.]+)% .* loss ([0-9.]+)",
                         log).groups()

    assert validation("model0", 0) == validation("model8", 0)

    stamp = (out / "runs" / "model0" / "checkpoints" / "last.pt").stat().st_mtime_ns
    second = run_demo(out)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "reusing the synthetic database" in second.stdout
    assert (out / "runs" / "model0" / "checkpoints" / "last.pt").stat().st_mtime_ns == stamp
    assert "reusing the threshold sweep" in second.stdout
    assert "step0: reusing the evaluation" in second.stdout


def test_demo_without_the_weights_says_to_run_make_weights(tmp_path):
    result = run_demo(tmp_path / "demo", env={"AVDIAR_WEIGHTS": str(tmp_path / "empty")})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "pyannote/segmentation-3.0" in lines[0] and "make weights" in lines[0]
    assert "--pretrain-steps" in lines[0]
    assert not (tmp_path / "demo").exists()  # stopped before generating anything


def test_demo_pretrain_opt_in_still_needs_campplus(tmp_path):
    result = run_demo(tmp_path / "demo", "--pretrain-steps", "2",
                      env={"AVDIAR_WEIGHTS": str(tmp_path / "empty")})
    assert result.returncode == 2
    assert "campplus" in result.stderr and "segmentation-3.0" not in result.stderr


def test_evaluations_are_reused_only_when_nothing_changed(tmp_path):
    import demo

    args = demo_args()
    yml = tmp_path / "db" / "database.yml"
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    argv = demo.eval_argv(str(checkpoint), tmp_path / "e", yml, args, threshold=0.7)
    assert not demo.eval_is_done(tmp_path / "e", argv, str(checkpoint))
    demo.record_eval(tmp_path / "e", argv, str(checkpoint))
    assert demo.eval_is_done(tmp_path / "e", argv, str(checkpoint))
    other = demo.eval_argv(str(checkpoint), tmp_path / "e", yml, args, threshold=0.8)
    assert not demo.eval_is_done(tmp_path / "e", other, str(checkpoint))
    os.utime(checkpoint, ns=(1, 1))  # trained further: evaluated again
    assert not demo.eval_is_done(tmp_path / "e", argv, str(checkpoint))


def test_demo_evaluations_parse_as_run_py_eval_flags(tmp_path):
    import demo
    from eval import cli as eval_cli

    parser = argparse.ArgumentParser()
    eval_cli.add_arguments(parser)
    yml = tmp_path / "db" / "database.yml"
    args = demo_args("--thresholds", "0.5,0.7")
    tune = parser.parse_args(demo.eval_argv(demo.SEGMENTATION, tmp_path / "t", yml, args,
                                            split="development", clustering="full",
                                            video=False, tune=args.thresholds)[1:])
    assert (tune.groundtruths, tune.embedding, tune.tune_threshold) == (
        "development", "campplus", "0.5,0.7")
    assert tune.video_dir is None
    test = parser.parse_args(demo.eval_argv("m.pt", tmp_path / "e", yml, args,
                                            threshold=0.65)[1:])
    assert (test.groundtruths, test.clustering, test.threshold) == ("test", "both", 0.65)
    assert test.tune_threshold is None and test.video_dir == str(yml.parent / "video")


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
    start_from = demo.SEGMENTATION
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
            assert config.checkpoint == start and config.lstm_hidden is None
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
