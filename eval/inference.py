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

from core.sincnet import SincNet
from core.sincnet_windows import Workspace

SAMPLE_RATE = 16000


@dataclass
class WindowOutput:
    """Local speakers of every window of one file.

    activations: (windows, F, K) hard 0/1 float32; probabilities: (windows, F, K) soft
    per-speaker probabilities; chunk_starts_s: (windows,) window start in seconds;
    window_s: window duration; center0_s / frame_step_s: time of frame 0's centre inside a
    window and the frame step, in seconds; duration_s: the file's duration.
    """

    activations: np.ndarray
    probabilities: np.ndarray
    chunk_starts_s: np.ndarray
    window_s: float
    center0_s: float
    frame_step_s: float
    duration_s: float

    @property
    def first_frames(self) -> np.ndarray:
        """Global frame index of each window's first frame, (windows,) int64."""
        return np.rint(self.chunk_starts_s / self.frame_step_s).astype(np.int64)

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


AMP_MODES = ("auto", "off", "bf16", "fp16")


def inference_precision(device: torch.device, amp: str = "auto") -> str:
    """What `amp` means on `device`: "float32", "bf16" or "fp16" (autocast). amp: "auto"
    (bf16, or fp16 where the GPU lacks bf16, on CUDA; float32 on the CPU), "off" (float32),
    "bf16" or "fp16"."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return "float32"
    if amp == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return amp


def _autocast(device: torch.device, amp: str = "auto"):
    """Autocast context for inference (see inference_precision)."""
    precision = inference_precision(device, amp)
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type,
                          dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _batches(waveform: torch.Tensor, starts: np.ndarray, window_samples: int,
             batch_size: int) -> Iterator[Tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """(starts, stretch (1, samples), windows (n, 1, window_samples)) per batch; the windows
    are a view of the stretch (no copy), which covers them all. starts must be evenly spaced."""
    padded = torch.nn.functional.pad(
        waveform, (0, max(int(starts[-1]) + window_samples - waveform.shape[-1], 0)))
    step = int(starts[1] - starts[0]) if len(starts) > 1 else window_samples
    for first in range(0, len(starts), batch_size):
        chunk = starts[first:first + batch_size]
        stretch = padded[:, int(chunk[0]):int(chunk[-1]) + window_samples]
        yield chunk, stretch, stretch.unfold(-1, window_samples, step).transpose(0, 1)


def _shares_sinc(model: nn.Module, step_samples: int) -> bool:
    """True when the model's SincNet can convolve each batch's stretch once (see
    core.sincnet.SincNet.shared_first_layer)."""
    sincnet = getattr(model, "sincnet", None)
    return isinstance(sincnet, SincNet) and step_samples % sincnet.stride == 0


@torch.inference_mode()
def infer_file(model: nn.Module, waveform: torch.Tensor, video: Optional[np.ndarray] = None, *,
               step_ratio: float = 0.1, batch_size: int = 32,
               device: Optional[torch.device] = None, progress: bool = False,
               desc: str = "windows", share_sinc: bool = True, amp: str = "auto") -> WindowOutput:
    """Run `model` over one file. waveform: (1, samples) float at 16 kHz; video: (frames, E)
    embeddings at model.video_fps, or None (fusion models then see no video at all).

    share_sinc: convolve each batch's stretch of audio with the sinc filters once instead
    of every window (equal outputs to float32 rounding; 10x less sinc convolution for a
    10 % step); used when the step is a multiple of the sinc stride.
    amp: "auto" (bf16 autocast on CUDA, float32 on the CPU), "off", "bf16" or "fp16"."""
    if waveform.dim() == 1:
        waveform = waveform[None]
    if waveform.dim() != 2 or waveform.shape[0] != 1:
        raise ValueError(f"expected a mono waveform (1, samples), got {tuple(waveform.shape)}")
    if not 0.0 < step_ratio <= 1.0:
        raise ValueError(f"--step must be in (0, 1] (a fraction of the window), got {step_ratio}")
    device = device or next(model.parameters()).device
    window_samples = int(round(float(model.duration_s) * SAMPLE_RATE))
    step_samples = max(int(round(window_samples * step_ratio)), 1)
    starts = window_starts(waveform.shape[-1], window_samples, step_samples)
    fps = float(getattr(model, "video_fps", 25.0) or 25.0)
    num_video = int(round(float(model.duration_s) * fps))
    use_video = video is not None and bool(getattr(model, "is_fusion", False))
    powerset = getattr(model, "powerset", None)
    hard_parts, soft_parts = [], []
    bar = _progress(len(starts), desc, progress)
    model.eval()
    share = share_sinc and len(starts) > 1 and _shares_sinc(model, step_samples)
    workspace = Workspace()  # SincNet's buffers, reused from batch to batch
    for chunk, stretch, waves in _batches(waveform.float(), starts, window_samples, batch_size):
        kwargs = {}
        if use_video:
            slices = [video_slice(video, s / SAMPLE_RATE, num_video, fps) for s in chunk]
            kwargs["video"] = torch.from_numpy(np.stack([v for v, _ in slices])).to(device)
            kwargs["video_mask"] = torch.from_numpy(np.stack([m for _, m in slices])).to(device)
        with _autocast(device, amp):
            if share:
                with model.sincnet.shared_first_layer(stretch.to(device), step_samples,
                                                      workspace):
                    scores = model(waves.to(device), **kwargs)
            else:
                scores = model(waves.contiguous().to(device), **kwargs)
        scores = scores.float()
        if powerset is not None:
            hard, soft = powerset.to_multilabel(scores), powerset.to_multilabel(scores, soft=True)
        else:
            soft = scores
            hard = (soft > 0.5).float()
        hard_parts.append(hard.cpu().numpy())
        soft_parts.append(soft.cpu().numpy())
        bar.update(len(chunk))
    bar.close()
    center0_s, step_s = model_time_axis(model, hard_parts[0].shape[1])
    return WindowOutput(
        activations=np.concatenate(hard_parts).astype(np.float32),
        probabilities=np.concatenate(soft_parts).astype(np.float32),
        chunk_starts_s=starts / SAMPLE_RATE, window_s=window_samples / SAMPLE_RATE,
        center0_s=center0_s, frame_step_s=step_s,
        duration_s=waveform.shape[-1] / SAMPLE_RATE)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="win", leave=False, disable=not enabled)
