"""Training on the synthetic audio-visual database (data/), through the real loaders."""

import sys

import pytest

import run
from train.config import Config
from train.loop import train


@pytest.fixture(autouse=True)
def _no_stop_file_env(monkeypatch):
    monkeypatch.delenv("AVDIAR_STOP_FILE", raising=False)


def test_a_short_run_lowers_validation_der(tmp_path, synthetic_db):
    config = Config(model="late", esize=synthetic_db.esize, protocol=synthetic_db.protocol,
                    database=str(synthetic_db.database), video_dir=str(synthetic_db.video_dir),
                    duration=2.0, batch_size=4, lstm_hidden=16, lstm_layers=1,
                    lstm_dropout=0.0, linear_hidden=16, d_model=16, fusion_layers=1,
                    fusion_heads=2, lr=1e-2, max_steps=12, val_every=6, epochs=100,
                    workers=0, device="cpu", cdir=str(tmp_path), log_every=3)
    result = train(config)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(config.experiment_dir / "tensorboard"))
    acc.Reload()
    der = [(e.step, e.value) for e in acc.Scalars("val/der")]
    assert [s for s, _ in der] == [0, 6, 12]
    assert result["best_der"] < der[0][1] - 0.05, der
    assert (config.experiment_dir / "config.json").is_file()
    assert "Synthetic.SpeakerDiarization.AV train" in (
        config.experiment_dir / "train.log").read_text()


@pytest.mark.slow
def test_run_py_without_subcommand_trains_then_evaluates(tmp_path, synthetic_db, monkeypatch,
                                                        capsys):
    argv = ["--model", "0", "--protocol", synthetic_db.protocol,
            "--database", str(synthetic_db.database), "--duration", "2", "--batch-size", "2",
            "--lstm-hidden", "8", "--lstm-layers", "1", "--lstm-dropout", "0",
            "--linear-hidden", "8", "--max-steps", "2", "--workers", "0", "--device", "cpu",
            "--cdir", str(tmp_path), "--project", "p", "--name", "n",
            "--groundtruths", "test"]
    monkeypatch.setattr(sys, "argv", ["run.py"] + argv)
    status = run.main(argv)
    experiment = tmp_path / "p" / "n"
    assert (experiment / "checkpoints" / "best.pt").is_file()
    assert status == 0, capsys.readouterr().err
    assert (experiment / "eval").is_dir()
