"""SincNet over evenly spaced windows of one stretch of audio (sliding-window inference), a
speed path behind core/speed.py's switch.

pyannote's inference runs SincNet on every window: with 10 s windows every 1 s, each
sample is convolved with the 80 sinc filters ten times. Here the stretch of audio that a
batch of windows covers is convolved once. The waveform norm of window j is an affine map
a_j x + b_j, and the convolution is linear, so window j's sinc responses are
a_j r + c_j (per filter) with r the stretch's responses. The rescale is monotone in r, so
the first pool's max |a_j r + c_j| over three frames is reached where r is largest or
smallest there: the stretch's responses are reduced once to sliding maxima and minima over
three frames, and each window rescales one of each per pooled frame (no per-window
convolution, abs or pool).

The rest of SincNet (norm, LeakyReLU, two convolutions with pools and norms) differs per
window. It runs channels-last, (windows, frames, channels): the convolutions as 2-d
channels-last ones, the norms as in-place sums over frames, the pools as maxima of strided
views. On a CPU the windows go through it a few at a time and the buffers are reused from
batch to batch (`Workspace`), so that the data stays in the caches and no fresh pages are
faulted in per batch. Outputs equal SincNet's per-window forward to float32 rounding.
(Why each of these choices: bench/results/2026-12-03-speed-paths.md.)
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

CPU_WINDOWS_PER_CHUNK = 4  # windows through layers 2-3 at a time on a CPU
CPU_FRAMES_PER_PIECE = 4096  # sinc frames per convolution of the stretch on a CPU


class Workspace:
    """Work buffers kept between calls: `buffer` hands back the last tensor of that name
    when shape, dtype and device match, else a new one (contents undefined)."""

    def __init__(self):
        self._buffers: Dict[str, torch.Tensor] = {}

    def buffer(self, name: str, shape: Tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        current = self._buffers.get(name)
        if (current is None or tuple(current.shape) != tuple(shape)
                or current.dtype != like.dtype or current.device != like.device):
            current = like.new_empty(shape)
            self._buffers[name] = current
        return current


def sincnet_over_windows(sincnet: nn.Module, stretch: torch.Tensor, window_step: int,
                         count: int, window_samples: int,
                         workspace: Workspace | None = None) -> torch.Tensor:
    """SincNet outputs of windows j = stretch[:, j * window_step : j * window_step +
    window_samples], j < count: (1, samples) at 16 kHz -> (count, 60, frames) float32.

    sincnet: a core.sincnet.SincNet in eval mode; window_step in samples, a multiple of its
    stride. Call without autograd (torch.inference_mode or no_grad)."""
    workspace = workspace or Workspace()
    on_cpu = stretch.device.type == "cpu"
    chunk = CPU_WINDOWS_PER_CHUNK if on_cpu else count
    pool = sincnet.POOL
    with torch.autocast(device_type=stretch.device.type, enabled=False):
        stretch = stretch.float()
        high, low = _sliding_extremes(sincnet, stretch, workspace, on_cpu)
        scale, shift = _window_affines(sincnet, stretch[0], count, window_step, window_samples,
                                       workspace)
    # a negative norm weight makes every a_j < 0: a_j r + c_j is then largest where r is
    # smallest, and high and low swap roles
    negative = sincnet.wav_norm1d.weight < 0
    if on_cpu:
        if negative:
            high, low = low, high
    else:  # without reading the sign, which would wait for the GPU
        high, low = torch.where(negative, low, high), torch.where(negative, high, low)
    frame_step = window_step // sincnet.stride
    frames = (window_samples - sincnet.KERNEL_SIZE) // sincnet.stride + 1
    pooled = frames // pool
    outputs = []
    for first in range(0, count, chunk):
        number = min(chunk, count - first)
        # rows of `high` for window j's pooled frames: j * frame_step + pool * t
        view = ((number, pooled, high.shape[1]),
                (frame_step * high.shape[1], pool * high.shape[1], 1),
                first * frame_step * high.shape[1])
        largest = workspace.buffer("largest", (chunk,) + view[0][1:], high)[:number]
        smallest = workspace.buffer("smallest", (chunk,) + view[0][1:], high)[:number]
        a, c = scale[first:first + number, None, None], shift[first:first + number, None, :]
        torch.addcmul(c, high.as_strided(*view), a, out=largest)  # a r + c at r's max
        torch.addcmul(-c, low.as_strided(*view), -a, out=smallest)  # -(a r + c) at r's min
        features = torch.maximum(largest, smallest, out=largest)  # max |a r + c|
        features = _norm_leaky_relu_(features, sincnet.norm1d[0], workspace, sincnet.LEAKY_SLOPE)
        for conv, norm in zip(sincnet.conv1d[1:], sincnet.norm1d[1:]):
            features = _norm_leaky_relu_(_conv_pool(features, conv, pool), norm, workspace,
                                        sincnet.LEAKY_SLOPE)
        outputs.append(features)
    return (torch.cat(outputs) if len(outputs) > 1 else outputs[0]).transpose(1, 2)


def _sliding_extremes(sincnet: nn.Module, stretch: torch.Tensor, workspace: Workspace,
                      on_cpu: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """Max and min of the stretch's sinc responses over `POOL` frames from each frame f:
    two (frames - POOL + 1, filters) channels-last tensors. The convolution is a matrix product
    of the stretch's strided frames (frames, kernel) with the filters (kernel, filters),
    whose output is channels-last already; on a CPU it runs in pieces of frames, so no
    tensor of the whole stretch's responses is made."""
    filters = sincnet.conv1d[0].filterbank.filters()
    stride, kernel = sincnet.stride, filters.shape[-1]
    frames = (stretch.shape[-1] - kernel) // stride + 1
    span = frames - sincnet.POOL + 1
    shape = (span, filters.shape[0])
    high, low = workspace.buffer("high", shape, stretch), workspace.buffer("low", shape, stretch)
    by_column = filters[:, 0, :].t()  # (kernel, filters)
    piece = CPU_FRAMES_PER_PIECE if on_cpu else span
    for start in range(0, span, piece):
        end = min(start + piece, span)
        count = end - start + sincnet.POOL - 1  # frames that reach the pools of start..end
        strided = stretch[0, start * stride:].unfold(0, kernel, stride)[:count]
        columns = workspace.buffer("columns", (count, kernel), stretch).copy_(strided)
        responses = workspace.buffer("responses", (count, filters.shape[0]), stretch)
        torch.mm(columns, by_column, out=responses)
        _sliding(torch.maximum, responses, high[start:end])
        _sliding(torch.minimum, responses, low[start:end])
    return high, low


def _sliding(reduce, rows: torch.Tensor, out: torch.Tensor) -> None:
    """out[f] = reduce over rows f .. f + len(rows) - len(out) (reduce: torch.maximum or
    torch.minimum)."""
    count = out.shape[0]
    reduce(rows[:count], rows[1:count + 1], out=out)
    for offset in range(2, rows.shape[0] - count + 1):
        reduce(out, rows[offset:offset + count], out=out)


def _window_affines(sincnet: nn.Module, signal: torch.Tensor, count: int, window_step: int,
                    window_samples: int,
                    workspace: Workspace) -> Tuple[torch.Tensor, torch.Tensor]:
    """Window j's sinc responses are scale[j] * r + shift[j] with r the stretch's: scale
    (count,), shift (count, filters), from the waveform norm's statistics and affine."""
    norm = sincnet.wav_norm1d
    variance, mean = _window_moments(signal, count, window_step, window_samples, workspace)
    filter_sums = sincnet.conv1d[0].filterbank.filters().sum(dim=(1, 2))
    scale = norm.weight / torch.sqrt(variance + norm.eps)
    return scale, (norm.bias - scale * mean)[:, None] * filter_sums


def _window_moments(signal: torch.Tensor, count: int, step: int, length: int,
                    workspace: Workspace) -> Tuple[torch.Tensor, torch.Tensor]:
    """(variance, mean), each (count,) float32, of signal[j * step : j * step + length]
    (signal: (samples,)), from float64 running sums of the signal and its square (kept in
    workspace buffers)."""
    samples = (count - 1) * step + length
    like = signal.new_empty((), dtype=torch.float64)
    used = workspace.buffer("moments_signal", (samples,), like).copy_(signal[:samples])
    sums = workspace.buffer("moments_sums", (samples + 1,), like)
    squares = workspace.buffer("moments_squares", (samples + 1,), like)
    sums[0], squares[0] = 0, 0
    torch.cumsum(used, 0, out=sums[1:])
    torch.cumsum(used.mul_(used), 0, out=squares[1:])
    starts = torch.arange(count, device=signal.device) * step
    mean = (sums[starts + length] - sums[starts]) / length
    variance = ((squares[starts + length] - squares[starts]) / length - mean * mean).clamp(min=0)
    return variance.float(), mean.float()


def _norm_leaky_relu_(features: torch.Tensor, norm: nn.InstanceNorm1d,
                      workspace: Workspace, slope: float) -> torch.Tensor:
    """Instance norm over frames, then LeakyReLU, in place: (windows, frames, channels)
    contiguous float32. Mean first, then the centred sum of squares (two passes, as
    PyTorch's CPU instance norm), the squares in a workspace buffer."""
    frames = features.shape[1]
    mean = features.sum(dim=1, keepdim=True).div_(frames)
    centred = features.sub_(mean)
    squares = workspace.buffer(f"squares{frames}", tuple(features.shape), features)
    variance = torch.mul(centred, centred, out=squares).sum(dim=1, keepdim=True).div_(frames)
    scale = norm.weight / torch.sqrt(variance + norm.eps)
    return F.leaky_relu_(torch.addcmul(norm.bias, centred, scale, out=centred), slope)


def _conv_pool(features: torch.Tensor, conv: nn.Conv1d, pool: int) -> torch.Tensor:
    """Convolution then max pool, channels-last: (windows, frames, in) -> (windows,
    (frames - kernel + 1) // pool, out) float32 (the convolution under autocast if on)."""
    weight = conv.weight[:, :, None, :].contiguous(memory_format=torch.channels_last)
    outputs = F.conv2d(features.transpose(1, 2)[:, :, None, :], weight, conv.bias)
    outputs = outputs[:, :, 0, :].transpose(1, 2)  # (windows, frames, out), a view
    kept = outputs.shape[1] // pool * pool
    # a max of strided views, into a new contiguous tensor
    pooled = torch.maximum(outputs[:, 0:kept:pool], outputs[:, 1:kept:pool])
    for phase in range(2, pool):
        torch.maximum(pooled, outputs[:, phase:kept:pool], out=pooled)
    return pooled.float()
