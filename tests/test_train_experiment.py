"""Experiments that cannot be lost or mixed (train/experiment.py): one run per folder, one
process at a time, settings checked on resume, bad flags and checkpoints refused before
anything is created."""

import argparse
import math
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from train import cli
from train.checkpoint import CheckpointError, load_checkpoint, step_checkpoints
from train.config import Config
from train.distributed import World
from train.experiment import LOCK_NAME, RunRefused, claim
from train.loop import train
from train.toydata import ToyData, toy_factory


@pytest.fixture(autouse=True)
def _no_stop_file_env(monkeypatch):
    monkeypatch.delenv("AVDIAR_STOP_FILE", raising=False)


def tiny(tmp_path, name="run", **overrides):
    settings = dict(model="audio", cdir=str(tmp_path), name=name, lstm_hidden=8, lstm_layers=1,
                    lstm_dropout=0.0, linear_hidden=8, batch_size=2, duration=1.0, epochs=1,
                    log_every=1, workers=0, lr=3e-3, device="cpu", val_at_start=False)
    settings.update(overrides)
    return Config(**settings)


TOY = toy_factory(batches_per_epoch=3, val_batches=1)


def files_of(config):
    """{relative path: bytes} of every checkpoint in the experiment folder."""
    ckpt = config.experiment_dir / "checkpoints"
    return {p.name: p.read_bytes() for p in sorted(ckpt.iterdir())} if ckpt.is_dir() else {}


def run_cli(argv, capsys):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    status = cli.main(parser.parse_args(argv))
    return status, capsys.readouterr().err


def tiny_argv(tmp_path, *extra):
    return ["--cdir", str(tmp_path), "--name", "n", "--lstm-hidden", "8", "--lstm-layers",
            "1", "--linear-hidden", "8", "--duration", "1", "--batch-size", "2", "--device",
            "cpu", "--workers", "0", "--protocol", "X.SpeakerDiarization.Y", *extra]


# --- one run per folder -------------------------------------------------------------------

def test_resume_never_into_a_run_is_refused_and_keeps_it(tmp_path):
    config = tiny(tmp_path, epochs=2, checkpoint_every=2)
    train(config, TOY)
    before = files_of(config)
    assert {"last.pt", "best.pt", "step-0000004.pt"} <= set(before)
    with pytest.raises(RunRefused, match="--resume auto.*fresh --name"):
        train(tiny(tmp_path, epochs=1, resume="never"), TOY)
    assert files_of(config) == before
    # and the run still continues where it was
    assert train(tiny(tmp_path, epochs=3, checkpoint_every=2), TOY)["step"] == 9


def test_resume_of_another_checkpoint_into_a_run_is_refused(tmp_path):
    first = tiny(tmp_path, "first", epochs=1)
    train(first, TOY)
    other = tiny(tmp_path, "other", epochs=1)
    train(other, TOY)
    before = files_of(other)
    path = first.experiment_dir / "checkpoints" / "last.pt"
    with pytest.raises(RunRefused, match="holds another run"):
        train(tiny(tmp_path, "other", epochs=2, resume=str(path)), TOY)
    assert files_of(other) == before
    # into a fresh folder it works, and naming the folder's own newest checkpoint works
    assert train(tiny(tmp_path, "fresh", epochs=2, resume=str(path)), TOY)["step"] == 6
    own = other.experiment_dir / "checkpoints" / "last.pt"
    assert train(tiny(tmp_path, "other", epochs=2, resume=str(own)), TOY)["step"] == 6


def test_unreadable_checkpoints_are_not_overwritten(tmp_path):
    config = tiny(tmp_path)
    train(config, TOY)
    last = config.experiment_dir / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])  # truncated; best.pt still holds the run
    with pytest.raises(RunRefused, match="neither last.pt nor a step-N.pt loads"):
        train(tiny(tmp_path, epochs=2), TOY)
    assert len(last.read_bytes()) == 100


# --- settings on resume ---------------------------------------------------------------------

@pytest.mark.parametrize("overrides, listed", [
    ({"model": "late", "esize": 8, "d_model": 8, "fusion_layers": 1, "fusion_heads": 2},
     "model: audio -> late"),
    ({"lstm_hidden": 16}, "lstm_hidden: 8 -> 16"),
    ({"batch_size": 4}, "batch_size: 2 -> 4"),
    ({"freeze": "lstm"}, "freeze: [] -> ['lstm']"),
])
def test_resume_with_other_model_or_data_settings_stops_listing_them(tmp_path, overrides,
                                                                     listed):
    config = tiny(tmp_path)
    train(config, TOY)
    saved_config = (config.experiment_dir / "config.json").read_text()
    with pytest.raises(RunRefused, match="other model or data settings") as error:
        train(tiny(tmp_path, epochs=2, **overrides), TOY)
    assert listed in str(error.value) and "\n" not in str(error.value)
    assert (config.experiment_dir / "config.json").read_text() == saved_config
    assert last_step(config) == 3


def test_finetune_into_a_scratch_run_is_refused(tmp_path):
    source = tiny(tmp_path, "source")
    train(source, TOY)
    config = tiny(tmp_path)
    train(config, TOY)
    again = tiny(tmp_path, epochs=2, finetune=True,
                 checkpoint=str(source.experiment_dir / "checkpoints" / "last.pt"),
                 lstm_hidden=None, lstm_layers=None, lstm_dropout=None, linear_hidden=None)
    with pytest.raises(RunRefused, match="finetune: False -> True"):
        train(again, TOY)


def last_step(config):
    return int(load_checkpoint(config.experiment_dir / "checkpoints" / "last.pt")["step"])


def test_changed_lr_steps_and_patience_are_applied_and_logged(tmp_path):
    config = tiny(tmp_path)
    train(config, TOY)
    result = train(tiny(tmp_path, epochs=2, lr=1e-2, patience=5), TOY)
    assert result["step"] == 6
    state = load_checkpoint(config.experiment_dir / "checkpoints" / "last.pt")
    assert [g["lr"] for g in state["optimizer_state"]["param_groups"]] == [1e-2]
    assert state["scheduler_state"]["base_lrs"] == [1e-2]
    log = (config.experiment_dir / "train.log").read_text()
    assert "applied from here on" in log and "lr: 0.003 -> 0.01" in log
    assert "epochs: 1 -> 2" in log and "patience: None -> 5" in log


# --- one process at a time ----------------------------------------------------------------

def test_a_second_training_into_a_folder_in_use_is_refused(tmp_path):
    config = tiny(tmp_path)
    with claim(config.experiment_dir, World()):  # as another training would hold it
        with pytest.raises(RunRefused, match="in use by another training"):
            train(config, TOY)
        assert not (config.experiment_dir / "checkpoints").exists()
    assert train(config, TOY)["step"] == 3


def test_a_killed_training_leaves_no_stuck_lock(tmp_path):
    config = tiny(tmp_path)
    config.experiment_dir.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, sys, time
        fd = os.open({str(config.experiment_dir / LOCK_NAME)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunRefused, match="in use"):
            train(config, TOY)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert train(config, TOY)["step"] == 3


def test_partial_files_of_a_killed_write_are_removed_at_start(tmp_path):
    config = tiny(tmp_path)
    train(config, TOY)
    ckpt = config.experiment_dir / "checkpoints"
    partial = [ckpt / "last.pt.tmp-4242", ckpt / "step-0000009.pt.tmp-17"]
    for path in partial:
        path.write_bytes(b"half a checkpoint")
    train(tiny(tmp_path, epochs=2), TOY)
    assert not any(p.exists() for p in partial)
    assert "last.pt.tmp-4242" in (config.experiment_dir / "train.log").read_text()
    assert [p.name for p in step_checkpoints(ckpt)] == []


# --- bad flags, files and checkpoints: rc 2, one line, nothing created ---------------------

@pytest.mark.parametrize("flags, words", [
    (["--lr", "inf"], "--lr"), (["--lr", "nan"], "--lr"), (["--grad-clip", "-1"], "--grad-clip"),
    (["--esize", "0"], "--esize"), (["--duration", "inf"], "--duration"),
    (["--weight-decay", "-0.1"], "--weight-decay"), (["--warmup-steps", "-1"], "--warmup-steps"),
    (["--database", "missing.yml"], "--database missing.yml"),
    (["--video-dir", "no/such/dir"], "--video-dir"),
    (["--resume", "no/such.pt"], "--resume no/such.pt"),
])
def test_bad_flags_get_one_line_and_create_nothing(tmp_path, capsys, flags, words):
    status, err = run_cli(tiny_argv(tmp_path / "exp", *flags), capsys)
    assert status == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "exp").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_a_gpu_is_refused(tmp_path, capsys):
    status, err = run_cli(tiny_argv(tmp_path / "exp", "--device", "cuda"), capsys)
    assert status == 2 and "--device cuda" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "exp").exists()


def bad_checkpoints(tmp_path):
    """{kind: path} of a truncated, an unsafe, and a foreign (not ours) checkpoint."""
    good = tmp_path / "good.pt"
    torch.save({"model_state": {}, "step": 1}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:60])
    unsafe = tmp_path / "unsafe.pt"

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo never run",))

    torch.save({"model_state": Payload(), "step": 1}, unsafe)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    return {"truncated": truncated, "unsafe": unsafe, "foreign": foreign}


@pytest.mark.parametrize("kind, words", [("truncated", "truncated"), ("unsafe", "system"),
                                         ("foreign", "not an avdiar training checkpoint")])
def test_bad_resume_checkpoints_get_one_line_naming_the_file(tmp_path, capsys, kind, words):
    path = bad_checkpoints(tmp_path)[kind]
    status, err = run_cli(tiny_argv(tmp_path / "exp", "--resume", str(path)), capsys)
    assert status == 2 and str(path) in err and words in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("kind, words", [("truncated", "truncated"), ("unsafe", "system")])
def test_bad_finetune_checkpoints_get_one_line_naming_the_file(tmp_path, kind, words):
    path = bad_checkpoints(tmp_path)[kind]
    config = tiny(tmp_path / "exp", finetune=True, checkpoint=str(path), lstm_hidden=None,
                  lstm_layers=None, linear_hidden=None, lstm_dropout=None)
    with pytest.raises(CheckpointError, match=words) as error:
        train(config, TOY)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "exp").exists()


def test_finetune_checkpoint_of_another_model_gets_one_line(tmp_path):
    source = tiny(tmp_path, "late", model="late", esize=8, d_model=8, fusion_layers=1,
                  fusion_heads=2)
    train(source, TOY)
    path = source.experiment_dir / "checkpoints" / "last.pt"
    config = tiny(tmp_path, "hybrid", model="hybrid", esize=8, finetune=True,
                  checkpoint=str(path), lstm_hidden=None, lstm_layers=None, linear_hidden=None,
                  lstm_dropout=None)
    with pytest.raises(CheckpointError, match="cannot be loaded as 'hybrid'") as error:
        train(config, TOY)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert not config.experiment_dir.exists()


# --- non-finite training ----------------------------------------------------------------------

def test_nan_inputs_are_named_and_no_flag_is_blamed(tmp_path, capsys):
    class NaNData(ToyData):
        def batch(self, stream, epoch, index):
            batch = super().batch(stream, epoch, index)
            if stream == 0:
                batch["waveforms"][1] = math.nan
            return batch

    config = tiny(tmp_path, max_nonfinite=2, epochs=3)
    result = train(config, lambda c, m, w: NaNData(m, batch_size=2, duration_s=1.0,
                                                    batches_per_epoch=5, val_batches=1))
    err = capsys.readouterr().err
    assert result["status"] == 1 and result["step"] == 2
    assert "waveforms of 1 chunk(s)" in err and "toy1" in err and "--lr" not in err, err


def test_diverging_training_stops_naming_lr_and_saves_no_nonfinite_weights(tmp_path, capsys):
    config = tiny(tmp_path, lr=1e30, grad_clip=None, epochs=5, max_nonfinite=3,
                  val_every=1)
    result = train(config, TOY)
    err = capsys.readouterr().err
    assert result["status"] == 1 and "diverged" in err and "--lr" in err, err
    last = config.experiment_dir / "checkpoints" / "last.pt"
    if last.exists():
        state = load_checkpoint(last)
        assert all(torch.isfinite(v).all() for v in state["model_state"].values())


# --- exact resume through the real loaders with workers --------------------------------------

@pytest.mark.slow
def test_resume_with_workers_follows_the_unbroken_run(tmp_path, synthetic_db):
    """Stop at step 3 and resume vs an unbroken run, 2 workers: bit-identical. Before the
    loaders had generators of their own, starting a DataLoader iterator drew from the
    training process's torch stream, so the resumed run drew other LSTM dropout masks."""
    common = dict(model="audio", protocol=synthetic_db.protocol,
                  database=str(synthetic_db.database), duration=2.0, batch_size=2,
                  lstm_hidden=8, lstm_layers=2, lstm_dropout=0.5, linear_hidden=8,
                  epochs=100, val_every=2, workers=2, device="cpu", cdir=str(tmp_path),
                  log_every=10, lr=1e-2)
    train(Config(name="straight", max_steps=5, **common))
    train(Config(name="broken", max_steps=3, **common))
    train(Config(name="broken", max_steps=5, **common))
    a = load_checkpoint(tmp_path / "avdiar" / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "avdiar" / "broken" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 5
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
