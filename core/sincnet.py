"""SincNet as in pyannote.audio: a learnable sinc band-pass filterbank and two convolutions.

Shapes: waveforms (batch, 1, samples) at 16 kHz -> features (batch, 60, frames).
Parameter and buffer names match pyannote's checkpoints
(`wav_norm1d.*`, `conv1d.0.filterbank.{low_hz_,band_hz_,window_,n_}`, `conv1d.{1,2}.*`,
`norm1d.{0,1,2}.*`) so that weights import by name.
"""

from __future__ import annotations

import contextlib
import math
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.constants import SAMPLE_RATE
from core.sincnet_windows import Workspace, sincnet_over_windows


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


class SincFilterbank(nn.Module):
    """Parametrised sinc band-pass filters: `num_filters // 2` (low, band) cut-off pairs.

    Each pair gives a cosine (even) and a sine (odd) filter, so the filterbank has
    `num_filters` output channels: all cosine filters first, then all sine filters.
    Cut-offs are in Hz; `min_low_hz` and `min_band_hz` keep them away from zero.
    The filters are built in float32 (also under autocast); in eval mode they are built
    once and cached until the parameters change or the module goes back to training.
    """

    MIN_LOW_HZ = 50.0
    MIN_BAND_HZ = 50.0
    LOWEST_INIT_HZ = 30.0

    def __init__(self, num_filters: int = 80, kernel_size: int = 251,
                 sample_rate: int = SAMPLE_RATE, min_low_hz: float = MIN_LOW_HZ,
                 min_band_hz: float = MIN_BAND_HZ):
        super().__init__()
        if kernel_size % 2 == 0:
            kernel_size += 1
        self.num_filters = num_filters
        self.kernel_size = kernel_size
        self.sample_rate = sample_rate
        self.min_low_hz = float(min_low_hz)
        self.min_band_hz = float(min_band_hz)
        num_pairs = num_filters // 2

        # Cut-offs evenly spaced on the mel scale between 30 Hz and Nyquist minus margins.
        high_hz = sample_rate / 2 - (self.min_low_hz + self.min_band_hz)
        mel = np.linspace(_hz_to_mel(np.float64(self.LOWEST_INIT_HZ)), _hz_to_mel(high_hz),
                          num_pairs + 1, dtype="float32")
        hz = _mel_to_hz(mel).astype("float32")
        self.low_hz_ = nn.Parameter(torch.from_numpy(hz[:-1]).view(-1, 1))
        self.band_hz_ = nn.Parameter(torch.from_numpy(np.diff(hz)).view(-1, 1))

        # Left half of a Hamming window and the left half of the time axis (radians/Hz).
        half = kernel_size // 2
        steps = torch.linspace(0, kernel_size / 2 - 1, steps=int(kernel_size / 2))
        self.register_buffer("window_", 0.54 - 0.46 * torch.cos(2 * math.pi * steps / kernel_size))
        centre = (kernel_size - 1) / 2.0
        self.register_buffer(
            "n_", 2 * math.pi * torch.arange(-centre, 0).view(1, -1) / sample_rate
        )
        assert self.n_.shape[1] == half
        self._cached: torch.Tensor | None = None
        self._cached_version: tuple = ()

    def _param_version(self) -> tuple:
        return (self.low_hz_._version, self.band_hz_._version,
                self.low_hz_.data_ptr(), self.band_hz_.data_ptr(), self.low_hz_.device)

    def filters(self) -> torch.Tensor:
        """The filterbank, shape (num_filters, 1, kernel_size), float32."""
        if not self.training and not torch.is_grad_enabled():
            version = self._param_version()
            if self._cached is None or self._cached_version != version:
                self._cached = self._build()
                self._cached_version = version
            return self._cached
        self._cached = None
        return self._build()

    def _build(self) -> torch.Tensor:
        with torch.autocast(device_type=self.low_hz_.device.type, enabled=False):
            low_hz = self.low_hz_.float()
            band_hz = self.band_hz_.float()
            n = self.n_.float()
            window = self.window_.float()
            low = self.min_low_hz + torch.abs(low_hz)
            high = torch.clamp(low + self.min_band_hz + torch.abs(band_hz),
                               self.min_low_hz, self.sample_rate / 2)
            band = (high - low)[:, 0]
            phase_low = low @ n  # (pairs, half)
            phase_high = high @ n
            half_n = n / 2
            cos_left = (torch.sin(phase_high) - torch.sin(phase_low)) / half_n * window
            sin_left = (torch.cos(phase_low) - torch.cos(phase_high)) / half_n * window
            cos_filters = torch.cat(
                [cos_left, 2 * band.view(-1, 1), torch.flip(cos_left, dims=[1])], dim=1)
            sin_filters = torch.cat(
                [sin_left, torch.zeros_like(band).view(-1, 1), -torch.flip(sin_left, dims=[1])],
                dim=1)
            scale = 2 * band[:, None]
            filters = torch.cat([cos_filters / scale, sin_filters / scale], dim=0)
        return filters.view(self.num_filters, 1, self.kernel_size)


class SincEncoder(nn.Module):
    """Convolution of the waveform with the sinc filterbank (no padding).

    Holds the filterbank under the name `filterbank` so keys read
    `conv1d.0.filterbank.low_hz_` as in pyannote's checkpoints.
    """

    def __init__(self, filterbank: SincFilterbank, stride: int):
        super().__init__()
        self.filterbank = filterbank
        self.stride = stride

    def forward(self, waveforms: torch.Tensor, scale: Optional[torch.Tensor] = None,
                shift: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(batch, 1, samples) -> (batch, num_filters, frames): the convolution of
        `scale * waveforms + shift` (scalars, e.g. an affine norm's weight and bias), with
        scale and shift folded into the filters and a per-filter bias."""
        filters = self.filterbank.filters().to(waveforms.dtype)
        bias = None
        if shift is not None:
            bias = shift.to(filters.dtype) * filters.sum(dim=(1, 2))
        if scale is not None:
            filters = scale.to(filters.dtype) * filters
        return F.conv1d(waveforms, filters, bias, stride=self.stride)


class SincNet(nn.Module):
    """Waveform InstanceNorm, sinc filterbank (80), |.|, then MaxPool/InstanceNorm/LeakyReLU
    after each of three convolutions (80 -> 60 -> 60, kernel 5).

    (batch, 1, samples) float32 at 16 kHz -> (batch, 60, frames).
    """

    NUM_FILTERS = 80
    KERNEL_SIZE = 251
    CONV_CHANNELS = 60
    CONV_KERNEL = 5
    POOL = 3
    LEAKY_SLOPE = 0.01  # negative slope of every LeakyReLU (F.leaky_relu's default)

    def __init__(self, sample_rate: int = SAMPLE_RATE, stride: int = 10):
        super().__init__()
        if sample_rate != SAMPLE_RATE:
            raise ValueError(
                f"SincNet expects {SAMPLE_RATE} Hz audio, got sample_rate={sample_rate}")
        self.sample_rate = sample_rate
        self.stride = stride
        self.wav_norm1d = nn.InstanceNorm1d(1, affine=True)
        filterbank = SincFilterbank(self.NUM_FILTERS, self.KERNEL_SIZE, sample_rate=sample_rate)
        self.conv1d = nn.ModuleList([
            SincEncoder(filterbank, stride),
            nn.Conv1d(self.NUM_FILTERS, self.CONV_CHANNELS, self.CONV_KERNEL),
            nn.Conv1d(self.CONV_CHANNELS, self.CONV_CHANNELS, self.CONV_KERNEL),
        ])
        self.pool1d = nn.ModuleList([nn.MaxPool1d(self.POOL, stride=self.POOL) for _ in range(3)])
        self.norm1d = nn.ModuleList([
            nn.InstanceNorm1d(self.NUM_FILTERS, affine=True),
            nn.InstanceNorm1d(self.CONV_CHANNELS, affine=True),
            nn.InstanceNorm1d(self.CONV_CHANNELS, affine=True),
        ])
        self._shared: Optional[Tuple[torch.Tensor, int, Optional[Workspace]]] = None

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) -> (batch, 60, frames)."""
        if self._shared is not None:
            return self._over_windows(waveforms, *self._shared)
        # The waveform norm's affine (two scalars) is folded into the sinc convolution:
        # conv(a * n + b) = conv(n, a * filters) + b * sum(filters). Same result, and
        # backward skips the convolution's input gradient over every sample.
        norm = self.wav_norm1d
        normalised = F.instance_norm(waveforms, eps=norm.eps)
        outputs = self.conv1d[0](normalised, norm.weight, norm.bias)
        outputs = _max_pool(torch.abs(outputs), self.pool1d[0].kernel_size)
        outputs = F.leaky_relu(self.norm1d[0](outputs), self.LEAKY_SLOPE)
        for conv, pool, norm in zip(self.conv1d[1:], self.pool1d[1:], self.norm1d[1:]):
            outputs = F.leaky_relu(norm(_max_pool(conv(outputs), pool.kernel_size)),
                                   self.LEAKY_SLOPE)
        return outputs

    # --- sliding windows: the sinc convolution once per stretch, not once per window --------
    @contextlib.contextmanager
    def shared_first_layer(self, stretch: torch.Tensor, window_step: int,
                           workspace: Optional[Workspace] = None):
        """Within this context, `forward(windows)` takes `windows[j]` to be
        `stretch[:, j * window_step : j * window_step + window_samples]` and convolves the
        stretch with the sinc filters once instead of every window
        (core/sincnet_windows.py; eval.inference.infer_file uses it when core/speed.py's
        switch is on). stretch: (1, samples) audio covering all windows of the
        next batch; window_step in samples, a multiple of the sinc stride; workspace:
        buffers to reuse from one batch to the next. Outputs equal the per-window path to
        float32 rounding. Inference only: eval mode, without autograd.
        """
        if window_step % self.stride:
            raise ValueError(f"window_step ({window_step} samples) must be a multiple of the "
                             f"sinc stride ({self.stride})")
        if self.training:
            raise RuntimeError("shared_first_layer is for inference: call model.eval() first")
        self._shared = (stretch, int(window_step), workspace)
        try:
            yield self
        finally:
            self._shared = None

    def _over_windows(self, windows: torch.Tensor, stretch: torch.Tensor, window_step: int,
                      workspace: Optional[Workspace]) -> torch.Tensor:
        """(count, 1, window samples) slices of `stretch` -> (count, 60, frames)."""
        count, _, window_samples = windows.shape
        last = (count - 1) * window_step
        if stretch.shape[-1] < last + window_samples or not (
                _views_every(windows, stretch, window_step)
                or (torch.equal(windows[0, 0], stretch[0, :window_samples])
                    and torch.equal(windows[-1, 0], stretch[0, last:last + window_samples]))):
            raise ValueError("shared_first_layer: the windows are not slices of the stretch "
                             f"every {window_step} samples")
        if torch.is_grad_enabled():
            raise RuntimeError("shared_first_layer is for inference: run it under "
                               "torch.inference_mode() or torch.no_grad()")
        return sincnet_over_windows(self, stretch, window_step, count, window_samples,
                                    workspace)


def _views_every(windows: torch.Tensor, stretch: torch.Tensor, step: int) -> bool:
    """True when windows (count, 1, samples) is the view stretch.unfold(-1, samples,
    step).transpose(0, 1) of stretch (1, samples'): checked on the memory layout, so that
    on a GPU the check does not wait for the device (comparing values would)."""
    return (windows.device == stretch.device and windows.dtype == stretch.dtype
            and windows.untyped_storage().data_ptr() == stretch.untyped_storage().data_ptr()
            and windows.storage_offset() == stretch.storage_offset()
            and windows.stride(0) == step * stretch.stride(-1)
            and windows.stride(-1) == stretch.stride(-1))


def _max_pool(inputs: torch.Tensor, size: int) -> torch.Tensor:
    """F.max_pool1d(inputs, size, size): (batch, channels, frames) -> (..., frames // size).
    With autograd, a max over a reshaped view: the same values, and the gradient to one
    maximum of each window as max_pool's (its backward is cheaper than max_pool's)."""
    if not inputs.requires_grad:
        return F.max_pool1d(inputs, size, size)
    frames = inputs.shape[-1] // size * size
    if frames != inputs.shape[-1]:
        inputs = inputs[..., :frames]
    return inputs.unflatten(-1, (-1, size)).max(dim=-1).values
