"""The GPU paths: models, inference and the training loop on CUDA, against the CPU
(exact resume on CUDA: tests/test_train_loop.py, parametrised over the device).

Skipped where torch sees no CUDA device (CI and the 2-core development machine); run on a
GPU machine with `python -m pytest -q tests/test_cuda.py` (bench/gpu_check.sh does).
"""

import os

import numpy as np
import pytest
import torch

from core import build_model, load_pretrained
from core.sincnet_windows import sincnet_over_windows
from eval.inference import infer_file
from train.loop import train
from train.toydata import toy_factory

from .test_core_sincnet_windows import WINDOW, _per_window_float64, _sincnet, _stretch, _windows
from .test_train_loop import last, scalars, tiny

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture
def no_tf32(monkeypatch):
    """True float32 on the GPU (cuDNN convolutions and RNNs use TF32 by default)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


def random_batch(batch_size=4, seconds=10.0, esize=384):
    generator = torch.Generator().manual_seed(0)
    waveforms = 0.1 * torch.randn(batch_size, 1, int(seconds * 16000), generator=generator)
    video = torch.randn(batch_size, int(seconds * 25), esize, generator=generator)
    return waveforms, video


@pytest.mark.parametrize("model_name", ["audio", "6", "7", "8"])
def test_models_compute_the_same_on_cuda_and_cpu(model_name, no_tf32):
    """float32 on the GPU within 1e-4 of the CPU (TF32 off); bf16 autocast picks the same
    powerset class in at least 95 % of the frames."""
    torch.manual_seed(0)
    model = build_model(model_name, esize=384).eval()
    waveforms, video = random_batch()
    kwargs = {} if model_name == "audio" else {"video": video}
    with torch.inference_mode():
        on_cpu = model(waveforms, **kwargs)
        model.cuda()
        cuda_kwargs = {k: v.cuda() for k, v in kwargs.items()}
        on_gpu = model(waveforms.cuda(), **cuda_kwargs).cpu()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            in_bf16 = model(waveforms.cuda(), **cuda_kwargs).float().cpu()
    assert (on_gpu - on_cpu).abs().max() <= 1e-4
    agreement = (in_bf16.argmax(-1) == on_cpu.argmax(-1)).float().mean()
    assert agreement >= 0.95, float(agreement)


def test_infer_file_on_cuda_matches_the_cpu(no_tf32):
    model = load_pretrained(os.path.join(FIXTURES, "powerset_small.bin"))
    generator = torch.Generator().manual_seed(1)
    waveform = 0.1 * torch.randn(1, int(model.duration_s * 16000 * 3.4), generator=generator)
    on_cpu = infer_file(model, waveform, step_ratio=0.1, batch_size=8)
    model.cuda()
    float32 = infer_file(model, waveform, step_ratio=0.1, batch_size=8, amp="off")
    autocast = infer_file(model, waveform, step_ratio=0.1, batch_size=8)  # auto: bf16
    assert np.abs(float32.probabilities - on_cpu.probabilities).max() <= 1e-4
    assert np.abs(autocast.probabilities - on_cpu.probabilities).max() <= 0.05
    assert (autocast.activations == on_cpu.activations).mean() >= 0.95


@pytest.mark.parametrize("gamma,beta,step,count", [
    (1.0, 0.0, 1600, 6), (-0.7, 0.2, 480, 5), (1.3, -0.5, 3200, 40)])
def test_shared_sinc_on_cuda_equals_the_per_window_forward(no_tf32, gamma, beta, step, count):
    """SincNet over the windows of one stretch (whole batch and stretch at once on CUDA) is
    as close to the float64 per-window forward as the per-window float32 forward on CUDA."""
    sincnet = _sincnet(gamma, beta)
    stretch = _stretch(count, step)
    windows = _windows(stretch, step)
    truth = _per_window_float64(sincnet, windows)
    sincnet.cuda()
    with torch.inference_mode():
        shared = sincnet_over_windows(sincnet, stretch.cuda(), step, count, WINDOW).cpu()
        plain = sincnet(windows.cuda()).cpu()
    assert shared.shape == plain.shape == truth.shape
    plain_error = (plain.double() - truth).abs().max()
    assert (shared.double() - truth).abs().max() <= 2 * plain_error + 1e-6


@pytest.mark.parametrize("amp", ["off", "bf16", "fp16"])
def test_training_on_cuda_learns(tmp_path, amp):
    """The loop on the GPU in each precision: validation loss falls; fp16 keeps a scaler."""
    config = tiny(tmp_path, amp=amp, device="cuda", epochs=2, lstm_dropout=0.0,
                  val_at_start=True, lr=1e-2, model="hybrid")
    result = train(config, toy_factory(batches_per_epoch=4, val_batches=1))
    assert result["status"] == 0 and result["step"] == 8
    _, values = scalars(config)
    val_loss = [v for _, v in values["val/loss"]]
    assert len(val_loss) == 3 and val_loss[-1] < val_loss[0] - 0.05, val_loss
    checkpoint = config.experiment_dir / "checkpoints" / "last.pt"
    on_cpu = load_pretrained(str(checkpoint))  # written on the GPU, read where there is none
    assert {p.device.type for p in on_cpu.parameters()} == {"cpu"}
    if amp == "fp16":
        assert last(config)["scaler_state"]["scale"] > 0
        assert "train/grad_scale" in values

