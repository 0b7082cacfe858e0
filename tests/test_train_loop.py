"""The training loop on toy data (train/toydata.py): resume, freezing, AMP, TensorBoard."""

import math

import pytest
import torch

from core import load_pretrained
from train.checkpoint import load_checkpoint
from train.config import Config
from train.loop import make_model, seed_all, train
from train.toydata import ToyData, toy_factory


@pytest.fixture(autouse=True)
def _no_stop_file_env(monkeypatch):
    monkeypatch.delenv("AVDIAR_STOP_FILE", raising=False)


def tiny(tmp_path, name="run", **overrides):
    settings = dict(model="audio", cdir=str(tmp_path), name=name, lstm_hidden=8, lstm_layers=2,
                    lstm_dropout=0.3, linear_hidden=8, d_model=8, fusion_layers=1,
                    fusion_heads=2, esize=8, batch_size=2, duration=1.0, epochs=2,
                    log_every=1, workers=0, lr=3e-3, device="cpu", val_at_start=False)
    settings.update(overrides)
    return Config(**settings)


def last(config):
    return load_checkpoint(config.experiment_dir / "checkpoints" / "last.pt")


def scalars(config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(config.experiment_dir / "tensorboard"))
    acc.Reload()
    return acc, {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
                 for tag in acc.Tags()["scalars"]}


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_resume_follows_the_uninterrupted_trajectory(tmp_path, monkeypatch, device):
    """Stop (stop file) mid-epoch, resume: bit-identical to a straight run, on the CPU and
    on a GPU with cuDNN's deterministic algorithms (the CUDA random state travels in the
    checkpoint, and cuDNN's LSTM dropout is re-seeded from it before every step: without
    that, the resumed GPU run drew other LSTM dropout masks from step 6 on)."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    common = dict(epochs=3, val_every=2, scheduler="cosine", warmup_steps=2,
                  modality_dropout=0.5, model="late", device=device)
    straight = tiny(tmp_path, "straight", **common)
    result = train(straight, toy_factory(batches_per_epoch=3, val_batches=1))
    assert result["step"] == 9 and not result["preempted"]

    broken = tiny(tmp_path, "broken", **common)

    class StopAtBatch(ToyData):
        def train(self, epoch, start_batch=0):
            for index, batch in enumerate(super().train(epoch, start_batch), start_batch):
                if (epoch, index) == (1, 1):
                    (broken.experiment_dir / "STOP").touch()
                yield batch

    def stopping_factory(config, model, world):
        return StopAtBatch(model, batch_size=2, duration_s=1.0, batches_per_epoch=3,
                           val_batches=1, esize=8)

    first = train(broken, stopping_factory)
    assert first["preempted"] and first["status"] == 0 and first["step"] == 5
    assert not (broken.experiment_dir / "STOP").exists()
    second = train(broken, toy_factory(batches_per_epoch=3, val_batches=1))
    assert second["step"] == 9 and not second["preempted"]

    a, b = last(straight), last(broken)
    assert a["model_state"].keys() == b["model_state"].keys()
    for key in a["model_state"]:
        assert torch.equal(a["model_state"][key], b["model_state"][key]), key
    for key, value in a["optimizer_state"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(value[name], b["optimizer_state"]["state"][key][name])
    assert a["scheduler_state"] == b["scheduler_state"]
    assert (a["best_der"], a["best_step"]) == (b["best_der"], b["best_step"])


def test_freeze_lstm_keeps_the_lstm_bit_identical(tmp_path):
    config = tiny(tmp_path, freeze_lstm=True, epochs=1, model="6")
    seed_all(config.seed)
    initial = {k: v.clone() for k, v in make_model(config).state_dict().items()}
    train(config, toy_factory(batches_per_epoch=3, val_batches=1))
    trained = last(config)["model_state"]
    lstm = [k for k in initial if k.startswith("lstm.")]
    others = [k for k in initial if k.split(".")[0] in ("linear", "classifier")]
    assert lstm and others
    assert all(torch.equal(initial[k], trained[k]) for k in lstm)
    assert any(not torch.equal(initial[k], trained[k]) for k in others)


@pytest.mark.slow
def test_bf16_loss_falls(tmp_path):
    from core.constants import bf16_supported

    config = tiny(tmp_path, amp="bf16", epochs=3, lstm_dropout=0.0, val_at_start=True, lr=1e-2)
    if not bf16_supported(torch.device("cpu")):  # refused before anything is created
        from train.experiment import RunRefused

        with pytest.raises(RunRefused, match="no bf16 kernels"):
            train(config, toy_factory(batches_per_epoch=4, val_batches=1))
        assert not config.experiment_dir.exists()
        pytest.skip("this CPU has no bf16 kernels (oneDNN): only the refusal is checked")
    train(config, toy_factory(batches_per_epoch=4, val_batches=1))
    _, values = scalars(config)
    val_loss = [v for _, v in values["val/loss"]]
    assert len(val_loss) == 4 and val_loss[-1] < val_loss[0] - 0.05, val_loss


def test_fp16_runs_with_the_scaler_and_tensorboard_has_the_scalars(tmp_path):
    config = tiny(tmp_path, amp="fp16", epochs=1, model="hybrid", val_at_start=True)
    result = train(config, toy_factory(batches_per_epoch=3, val_batches=1))
    assert result["status"] == 0
    assert last(config)["scaler_state"]["scale"] > 0
    acc, values = scalars(config)
    for tag in ("train/loss", "train/lr/pretrained", "train/lr/fusion", "train/grad_norm",
                "train/grad_scale", "perf/chunks_per_s", "perf/data_wait_fraction",
                "val/loss", "val/der", "val/false_alarm", "val/missed", "val/confusion"):
        assert tag in values, (tag, sorted(values))
    assert [s for s, _ in values["train/loss"]] == [1, 2, 3]
    assert [s for s, _ in values["val/der"]] == [0, 3]
    assert 0.0 <= values["perf/data_wait_fraction"][0][1] <= 1.0
    assert "config/text_summary" in acc.Tags()["tensors"]
    assert "hparams/best_der" in values


def test_resumed_run_continues_the_same_curves(tmp_path):
    config = tiny(tmp_path, epochs=1)
    train(config, toy_factory(batches_per_epoch=3, val_batches=1))
    config = tiny(tmp_path, epochs=2)
    result = train(config, toy_factory(batches_per_epoch=3, val_batches=1))
    assert result["step"] == 6
    _, values = scalars(config)
    assert [s for s, _ in values["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert "resuming from" in (config.experiment_dir / "train.log").read_text()


def test_our_checkpoints_load_in_load_pretrained(tmp_path):
    config = tiny(tmp_path, model="early", epochs=1)
    train(config, toy_factory(batches_per_epoch=2, val_batches=1))
    path = config.experiment_dir / "checkpoints" / "last.pt"
    model = load_pretrained(str(path))
    assert model.model_id == 7 and model.esize == 8
    saved = last(config)["model_state"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    # and fine-tuning again from it (--finetune --checkpoint last.pt)
    again = tiny(tmp_path, "again", model="early", epochs=1, finetune=True, checkpoint=str(path),
                 lstm_hidden=None, lstm_layers=None, lstm_dropout=None, linear_hidden=None)
    assert train(again, toy_factory(batches_per_epoch=2, val_batches=1))["status"] == 0


def test_non_finite_losses_are_skipped_then_stop(tmp_path, capsys):
    class NaNData(ToyData):
        def batch(self, stream, epoch, index):
            batch = super().batch(stream, epoch, index)
            if stream == 0:
                batch["waveforms"] = torch.full_like(batch["waveforms"], math.nan)
            return batch

    config = tiny(tmp_path, max_nonfinite=3, epochs=3)
    seed_all(config.seed)
    initial = make_model(config).state_dict()
    result = train(config, lambda c, m, w: NaNData(m, batch_size=2, duration_s=1.0,
                                                    batches_per_epoch=5, val_batches=1))
    assert result["status"] == 1 and result["step"] == 3
    assert "non-finite losses in a row" in capsys.readouterr().err
    _, values = scalars(config)
    assert values["train/nonfinite_steps"][0][1] == 1.0
    # nothing was stepped: a checkpoint written at step 0 would equal the initial weights
    assert not (config.experiment_dir / "checkpoints" / "last.pt").exists() or all(
        torch.equal(initial[k], v) for k, v in last(config)["model_state"].items())


def test_early_stopping_with_patience(tmp_path):
    config = tiny(tmp_path, lr=1e-12, patience=2, val_every=1, val_at_start=True, epochs=5)
    result = train(config, toy_factory(batches_per_epoch=4, val_batches=1))
    assert result["stopped_early"] and result["step"] == 2 and result["best_step"] == 0
    assert "early stopping" in (config.experiment_dir / "train.log").read_text()
