"""Sliding-window inference over whole files: local speaker activations per window.

A file's waveform (1, samples) at 16 kHz is cut into windows of the model's chunk
duration every `step_ratio` of it; the last window is zero-padded to reach the end. Each
window gets its own video slice (Tv = round(duration_s * fps) frames from global frame
round(start_s * fps)) and mask (False beyond the video or on non-finite rows).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from core import speed
from core.constants import INFERENCE_AMP_MODES as AMP_MODES
from core.constants import SAMPLE_RATE, bf16_supported
from core.models import takes_video
from core.sincnet import SincNet
from core.sincnet_windows import Workspace


@dataclass
class WindowOutput:
    """Local speakers of every window of one file.

    activations: (windows, F, K) hard 0/1 float32; probabilities: (windows, F, K) soft
    per-speaker probabilities; chunk_starts_s: (windows,) window start in seconds;
    window_s: window duration; center0_s / frame_step_s: time of frame 0's centre inside a
    window and the frame step, in seconds; duration_s: the file's duration; multilabel: True
    for a multi-label model (activations = probabilities > 0.5), False for a powerset one
    (activations = the speakers of the most likely class).
    """

    activations: np.ndarray
    probabilities: np.ndarray
    chunk_starts_s: np.ndarray
    window_s: float
    center0_s: float
    frame_step_s: float
    duration_s: float
    multilabel: bool = False

    @property
    def first_frames(self) -> np.ndarray:
        """Global frame index of each window's first frame, (windows,) int64."""
        return np.rint(self.chunk_starts_s / self.frame_step_s).astype(np.int64)

    @property
    def ranking_scores(self) -> np.ndarray:
        """(windows, F, K) scores by which reconstruction ranks speakers (as pyannote does):
        the hard activations of a powerset model, the probabilities of a multi-label one."""
        return self.probabilities if self.multilabel else self.activations

    @property
    def num_frames(self) -> int:
        """Frames on the file's grid whose centre lies inside the file."""
        return max(int(np.floor((self.duration_s - self.center0_s) / self.frame_step_s)) + 1, 1)


def window_starts(num_samples: int, window_samples: int, step_samples: int) -> np.ndarray:
    """Start sample of every window, (windows,) int64; the last one may run past the end."""
    if window_samples <= 0 or step_samples <= 0:
        raise ValueError(f"window ({window_samples}) and step ({step_samples}) must be > 0")
    count = max((num_samples - window_samples) // step_samples + 1, 1)
    starts = list(range(0, count * step_samples, step_samples))
    if starts[-1] + window_samples < num_samples:
        starts.append(starts[-1] + step_samples)
    return np.asarray(starts, dtype=np.int64)


def video_slice(video: Optional[np.ndarray], start_s: float, num_video_frames: int,
                fps: float) -> Tuple[np.ndarray, np.ndarray]:
    """(Tv, E) float32 slice and (Tv,) bool mask of `video` (frames, E) for a window."""
    if video is None:
        raise ValueError("video_slice needs a video array")
    first = int(round(start_s * fps))
    index = np.arange(first, first + num_video_frames)
    inside = (index >= 0) & (index < len(video))
    out = np.zeros((num_video_frames, video.shape[1]), dtype=np.float32)
    out[inside] = np.asarray(video[index[inside]], dtype=np.float32)
    mask = inside & np.all(np.isfinite(out), axis=1)
    out[~mask] = 0.0
    return out, mask


def model_time_axis(model: nn.Module, num_frames: int) -> Tuple[float, float]:
    """(center0_s, frame_step_s) of the model's frames inside a window."""
    times = model.frame_times(num_frames)
    times = times.detach().cpu().double().numpy() if torch.is_tensor(times) else np.asarray(times)
    step = float(times[1] - times[0]) if len(times) > 1 else float(model.duration_s)
    return float(times[0]), step


def inference_precision(device: torch.device, amp: str = "auto") -> str:
    """What `amp` means on `device`: "float32", "bf16" or "fp16" (autocast). amp: "auto"
    (bf16, or fp16 where the GPU lacks bf16, on CUDA; float32 on the CPU), "off" (float32),
    "bf16" or "fp16"."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return "float32"
    if amp == "auto":
        return "bf16" if bf16_supported(device) else "fp16"
    if amp == "bf16" and not bf16_supported(device):
        raise ValueError(f"--amp bf16: this {device.type.upper()} has no bf16 kernels for the "
                         "LSTM; use --amp off (float32)")
    return amp


def _autocast(device: torch.device, amp: str = "auto"):
    """Autocast context for inference (see inference_precision)."""
    precision = inference_precision(device, amp)
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type,
                          dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _stretches(waveform: torch.Tensor, starts: np.ndarray,
               window_samples: int, batch_size: int) -> Iterator[Tuple[np.ndarray, torch.Tensor]]:
    """(starts, stretch (1, samples)) per batch: the stretch of audio that covers the batch's
    windows (a view of the zero-padded waveform). starts must be evenly spaced."""
    padded = torch.nn.functional.pad(
        waveform, (0, max(int(starts[-1]) + window_samples - waveform.shape[-1], 0)))
    for first in range(0, len(starts), batch_size):
        chunk = starts[first:first + batch_size]
        yield chunk, padded[:, int(chunk[0]):int(chunk[-1]) + window_samples]


def _shares_sinc(model: nn.Module, step_samples: int) -> bool:
    """True when the model's SincNet can convolve each batch's stretch once (see
    core.sincnet.SincNet.shared_first_layer)."""
    sincnet = getattr(model, "sincnet", None)
    return isinstance(sincnet, SincNet) and step_samples % sincnet.stride == 0


@torch.inference_mode()
def infer_file(model: nn.Module, waveform: torch.Tensor, video: Optional[np.ndarray] = None, *,
               step_ratio: float = 0.1, batch_size: int = 32,
               device: Optional[torch.device] = None, progress: bool = False,
               desc: str = "windows", amp: str = "auto") -> WindowOutput:
    """Run `model` over one file. waveform: (1, samples) float at 16 kHz; video: (frames, E)
    embeddings at model.video_fps, or None (fusion models then see no video at all).

    With the speed paths on (core/speed.py, the default) each batch's stretch of audio is
    convolved with the sinc filters once instead of once per window, where the step is a
    multiple of the sinc stride (outputs equal to float32 rounding).
    amp: "auto" (bf16 autocast on CUDA, float32 on the CPU), "off", "bf16" or "fp16"."""
    if waveform.dim() == 1:
        waveform = waveform[None]
    if waveform.dim() != 2 or waveform.shape[0] != 1:
        raise ValueError(f"expected a mono waveform (1, samples), got {tuple(waveform.shape)}")
    if not 0.0 < step_ratio <= 1.0:
        raise ValueError(f"--step must be in (0, 1] (a fraction of the window), got {step_ratio}")
    device = torch.device(device or next(model.parameters()).device)
    window_samples = int(round(float(model.duration_s) * SAMPLE_RATE))
    step_samples = max(int(round(window_samples * step_ratio)), 1)
    starts = window_starts(waveform.shape[-1], window_samples, step_samples)
    fps = float(getattr(model, "video_fps", 25.0) or 25.0)
    num_video = int(round(float(model.duration_s) * fps))
    use_video = video is not None and takes_video(model)
    powerset = getattr(model, "powerset", None)
    outputs = _Outputs(device)
    bar = _progress(len(starts), desc, progress)
    model.eval()
    share = speed.enabled() and len(starts) > 1 and _shares_sinc(model, step_samples)
    workspace = Workspace()  # SincNet's buffers, reused from batch to batch
    # one autocast context for the whole file: the weights are cast once, not every batch
    with _autocast(device, amp):
        for chunk, stretch in _stretches(waveform.float(), starts, window_samples, batch_size):
            # only the stretch travels to the device; the windows are views of it there
            stretch = stretch.to(device)
            waves = stretch.unfold(-1, window_samples, step_samples).transpose(0, 1)
            kwargs = {}
            if use_video:
                slices = [video_slice(video, s / SAMPLE_RATE, num_video, fps) for s in chunk]
                kwargs["video"] = torch.from_numpy(np.stack([v for v, _ in slices])).to(device)
                kwargs["video_mask"] = torch.from_numpy(
                    np.stack([m for _, m in slices])).to(device)
            if share:
                with model.sincnet.shared_first_layer(stretch, step_samples, workspace):
                    scores = model(waves, **kwargs)
            else:
                scores = model(waves.contiguous(), **kwargs)
            with torch.autocast(device.type, enabled=False):  # probabilities in float32
                outputs.add(*_activations(scores.float(), powerset))
            bar.update(len(chunk))
    bar.close()
    activations, probabilities = outputs.gather()
    center0_s, step_s = model_time_axis(model, activations.shape[1])
    return WindowOutput(
        activations=activations, probabilities=probabilities,
        chunk_starts_s=starts / SAMPLE_RATE, window_s=window_samples / SAMPLE_RATE,
        center0_s=center0_s, frame_step_s=step_s,
        duration_s=waveform.shape[-1] / SAMPLE_RATE, multilabel=powerset is None)


def _activations(scores: torch.Tensor, powerset) -> Tuple[torch.Tensor, torch.Tensor]:
    """(hard 0/1, soft probabilities), each (windows, F, K) float32, from the model's float32
    scores: powerset log-probabilities, or multilabel probabilities when powerset is None."""
    if powerset is not None:
        return powerset.to_multilabel(scores), powerset.to_multilabel(scores, soft=True)
    return (scores > 0.5).float(), scores


class _Outputs:
    """Each batch's (hard, soft) activations, (windows, F, K), kept where they were computed;
    on a GPU copied to the host `GPU_BATCHES` batches at a time, so that the host does not
    wait for every batch and queues the next one while the GPU computes."""

    GPU_BATCHES = 64

    def __init__(self, device: torch.device):
        self._keep = 1 if device.type == "cpu" else self.GPU_BATCHES
        self._pending: list = []
        self._hard: list = []
        self._soft: list = []

    def add(self, hard: torch.Tensor, soft: torch.Tensor) -> None:
        self._pending.append((hard, soft))
        if len(self._pending) >= self._keep:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            hard, soft = zip(*self._pending)
            self._hard.append((torch.cat(hard) if len(hard) > 1 else hard[0]).cpu().numpy())
            self._soft.append((torch.cat(soft) if len(soft) > 1 else soft[0]).cpu().numpy())
            self._pending = []

    def gather(self) -> Tuple[np.ndarray, np.ndarray]:
        """(activations, probabilities) of every window so far, float32 numpy arrays."""
        self._flush()
        return (np.concatenate(self._hard).astype(np.float32, copy=False),
                np.concatenate(self._soft).astype(np.float32, copy=False))


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="win", leave=False, disable=not enabled)
