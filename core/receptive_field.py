"""Frame arithmetic of SincNet: output frame counts, receptive fields and frame times.

Everything is derived from one list of (kernel_size, stride) per layer, so that any
SincNet stride gives the right numbers. For stride 10 at 16 kHz: 589 frames for 10 s,
a step of 270 samples, a receptive field of 991 samples, first centre at sample 495.
"""

from __future__ import annotations

from typing import List, Tuple

import torch

from core.constants import SAMPLE_RATE


def sincnet_layers(stride: int = 10) -> List[Tuple[int, int]]:
    """(kernel_size, stride) of every layer of SincNet that changes the time axis."""
    return [(251, stride), (3, 3), (5, 1), (3, 3), (5, 1), (3, 3)]


def num_frames(num_samples: int, stride: int = 10) -> int:
    """Number of output frames for `num_samples` input samples (no padding anywhere)."""
    frames = int(num_samples)
    for kernel, step in sincnet_layers(stride):
        frames = (frames - kernel) // step + 1
    return max(frames, 0)


def receptive_field_size(num_output_frames: int = 1, stride: int = 10) -> int:
    """Number of input samples seen by `num_output_frames` consecutive output frames."""
    size = num_output_frames
    for kernel, step in reversed(sincnet_layers(stride)):
        size = (size - 1) * step + kernel
    return size


def receptive_field_step(stride: int = 10) -> int:
    """Samples between the centres of two consecutive output frames."""
    step = 1
    for _, layer_step in sincnet_layers(stride):
        step *= layer_step
    return step


def receptive_field_center(frame: int = 0, stride: int = 10) -> int:
    """Index of the input sample at the centre of output frame `frame`'s receptive field."""
    center = frame
    for kernel, step in reversed(sincnet_layers(stride)):
        center = center * step + (kernel - 1) // 2
    return center


def frame_times(num_output_frames: int, stride: int = 10,
                sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Time in seconds of the centre of every output frame, shape (num_output_frames,)."""
    first = receptive_field_center(0, stride)
    step = receptive_field_step(stride)
    centers = first + step * torch.arange(num_output_frames, dtype=torch.float64)
    return (centers / sample_rate).to(torch.float32)
