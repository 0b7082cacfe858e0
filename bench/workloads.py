"""The work the benchmarks time, set up alike: the audio-only model with segmentation-3.0's
sizes, its training step on a fixed random batch, and a synthetic recording for
sliding-window inference."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from core import build_model

SAMPLE_RATE = 16000
CHUNK_SAMPLES = 160000  # 10 s
CHUNK_FRAMES = 589  # SincNet frames of 10 s
SEGMENTATION_3_LSTM = {"hidden_size": 128, "num_layers": 4, "bidirectional": True,
                       "dropout": 0.5}


def audio_model(device: torch.device, seed: int = 0) -> nn.Module:
    """The audio-only PyanNet with segmentation-3.0's sizes (SincNet stride 10, LSTM 128 x 4
    bidirectional with dropout 0.5, linear 128 x 2, 7 powerset classes), random weights
    from `seed`, on `device`, in training mode."""
    torch.manual_seed(seed)
    return build_model("audio", lstm=dict(SEGMENTATION_3_LSTM)).to(device)


def training_step(model: nn.Module, device: torch.device, batch_size: int = 32,
                  amp: str = "off", seed: int = 2) -> Callable[[], torch.Tensor]:
    """A function that runs one training step of `model` and returns its loss: forward,
    NLL on random powerset targets, backward, Adam (lr 1e-4), on a fixed random batch of
    batch_size x 10 s (waveforms (batch, 1, 160000), targets (batch, 589)); amp "off"
    (float32) or "bf16" (autocast). The caller synchronises a GPU."""
    generator = torch.Generator().manual_seed(seed)
    waveforms = (0.1 * torch.randn(batch_size, 1, CHUNK_SAMPLES, generator=generator)).to(device)
    targets = torch.randint(0, 7, (batch_size, CHUNK_FRAMES), generator=generator).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16,
                            enabled=amp == "bf16"):
            scores = model(waveforms)
        loss = F.nll_loss(scores.float().reshape(-1, scores.shape[-1]), targets.reshape(-1))
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def synthetic_recording(minutes: float, seed: int = 3) -> torch.Tensor:
    """(1, samples) float32 at 16 kHz, `minutes` long: noise under a slow random envelope."""
    generator = torch.Generator().manual_seed(seed)
    num_samples = int(minutes * 60 * SAMPLE_RATE)
    envelope = torch.rand(1, 1, num_samples // 4000 + 2, generator=generator)
    envelope = F.interpolate(envelope, size=num_samples, mode="linear")[0]
    return (0.1 * envelope * torch.randn(1, num_samples, generator=generator)).float()
