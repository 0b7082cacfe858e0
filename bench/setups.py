"""What several bench scripts set up alike: the audio-only model with segmentation-3.0's
sizes, and a line that names the device."""

from __future__ import annotations

import torch
import torch.nn as nn

from core import build_model


def audio_model(device: torch.device, seed: int = 0) -> nn.Module:
    """The audio-only PyanNet with segmentation-3.0's sizes (LSTM 128 x 4 bidirectional,
    dropout 0.5), random weights from `seed`, on `device`, in training mode."""
    torch.manual_seed(seed)
    return build_model("audio", lstm={"hidden_size": 128, "num_layers": 4,
                                      "bidirectional": True, "dropout": 0.5}).to(device)


def device_name(device: torch.device, threads: int) -> str:
    """"NVIDIA H200" on a GPU, "CPU, 2 threads" on a CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {threads} threads"
