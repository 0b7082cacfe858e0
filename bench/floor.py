"""The compute floor of a PyanNet training step: FLOPs counted analytically, matmul rates measured.

    python bench/floor.py                      # per-part FLOPs of one 10 s chunk, CPU rates
    python bench/floor.py --step-s 3.4         # and how far a measured batch-32 step is from it

FLOPs count multiply-adds as 2 and only the matrix work (convolutions, LSTM gate
projections, linear layers); pooling, norms, activations and the LSTM's element-wise gate
arithmetic are left out (they are memory-bound, not FLOP-bound). A training step (forward,
backward for inputs and for weights) is taken as 3x the forward FLOPs, less the sinc
convolution's input gradient, which avdiar never computes (the waveform needs none: the
waveform norm's affine is folded into the filters). Sliding-window inference with a 1 s step
convolves each batch's stretch of audio once (core.sincnet.SincNet.shared_first_layer): a
batch of 32 windows costs one 41 s convolution instead of 32 x 10 s. bench/vs_pyannote.py
also sets the float32 inference floor per batch against the measured seconds per batch.

The LSTM splits in two: the input projections of a layer run for all frames at once (one
big matmul, (B*F, D_in) x (D_in, 4H)), the recurrent projection runs frame after frame
((B, H) x (H, 4H)), a small matmul that reaches a fraction of the big-matmul rate. The
"bulk" floor uses the big-matmul rate for everything; the "sequential" floor charges the
recurrent part at the small-matmul rate.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

SINC_FILTERS, SINC_KERNEL, CONV_CHANNELS, CONV_KERNEL, POOL = 80, 251, 60, 5, 3


def _conv_out(length: int, kernel: int, stride: int = 1) -> int:
    return (length - kernel) // stride + 1


def flops_per_chunk(num_samples: int = 160000, stride: int = 10, hidden: int = 128,
                    lstm_layers: int = 4, bidirectional: bool = True, linear_hidden: int = 128,
                    linear_layers: int = 2, num_classes: int = 7) -> Dict[str, float]:
    """Forward FLOPs of one chunk of `num_samples` samples, per part (2 per multiply-add)."""
    parts: Dict[str, float] = {}
    length = _conv_out(num_samples, SINC_KERNEL, stride)
    parts["sincnet conv0 (sinc 80x251, stride 10)"] = 2.0 * SINC_FILTERS * SINC_KERNEL * length
    length = _conv_out(length // POOL, CONV_KERNEL)
    parts["sincnet conv1 (80->60, k5)"] = 2.0 * CONV_CHANNELS * SINC_FILTERS * CONV_KERNEL * length
    length = _conv_out(length // POOL, CONV_KERNEL)
    parts["sincnet conv2 (60->60, k5)"] = 2.0 * CONV_CHANNELS * CONV_CHANNELS * CONV_KERNEL * length
    frames = length // POOL
    directions = 2 if bidirectional else 1
    gates = 4 * hidden
    inputs = 0.0
    size_in = CONV_CHANNELS
    for _ in range(lstm_layers):
        inputs += 2.0 * directions * frames * size_in * gates
        size_in = hidden * directions
    parts["lstm input projections (all frames at once)"] = inputs
    parts["lstm recurrent projections (frame by frame)"] = (
        2.0 * lstm_layers * directions * frames * hidden * gates)
    linear = 0.0
    size_in = hidden * directions
    for _ in range(linear_layers):
        linear += 2.0 * frames * size_in * linear_hidden
        size_in = linear_hidden
    parts["linear layers"] = linear
    parts["classifier"] = 2.0 * frames * size_in * num_classes
    return parts


def inference_flops_per_window(parts: Dict[str, float], batch_size: int = 32,
                               window_s: float = 10.0, step_s: float = 1.0) -> float:
    """Forward FLOPs per window when each batch's stretch is convolved with the sinc
    filters once ((batch - 1) * step + window seconds of audio for `batch_size` windows)."""
    conv0 = parts["sincnet conv0 (sinc 80x251, stride 10)"]
    stretch_s = (batch_size - 1) * step_s + window_s
    return sum(parts.values()) - conv0 + conv0 * stretch_s / (batch_size * window_s)


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work (before reading a timer); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_mm(a: torch.Tensor, b: torch.Tensor, min_time_s: float) -> float:
    """Seconds per a @ b (best of runs of at least min_time_s)."""
    for _ in range(3):
        torch.mm(a, b)
    best = float("inf")
    for _ in range(3):
        synchronize(a.device)
        count, started = 0, time.perf_counter()
        while True:
            torch.mm(a, b)
            count += 1
            synchronize(a.device)
            elapsed = time.perf_counter() - started
            if elapsed >= min_time_s / 3:
                break
        best = min(best, elapsed / count)
    return best


def matmul_rate(dtype: torch.dtype, m: int, k: int, n: int, min_time_s: float = 0.6,
                device: torch.device = torch.device("cpu")) -> float:
    """Measured FLOP/s of an (m, k) x (k, n) torch.mm in `dtype` on `device`."""
    a = torch.randn(m, k).to(device, dtype)
    b = torch.randn(k, n).to(device, dtype)
    return 2.0 * m * k * n / _time_mm(a, b, min_time_s)


def big_size(dtype: torch.dtype, largest: int = 2048, min_call_s: float = 0.05,
             device: torch.device = torch.device("cpu")) -> int:
    """Square matmul size for `dtype`: doubled from 256 until one call takes min_call_s
    (CPUs without bf16 instructions emulate it ~100x slower, so bf16 may stay small)."""
    size = 256
    while size < largest:
        a = torch.randn(size, size).to(device, dtype)
        synchronize(a.device)
        started = time.perf_counter()
        torch.mm(a, a)
        synchronize(a.device)
        if time.perf_counter() - started >= min_call_s:
            break
        size *= 2
    return size


def measure_rates(batch_size: int = 32, hidden: int = 128,
                  device: torch.device = torch.device("cpu")) -> Dict[str, float]:
    """Big (up to 2048^3 on the CPU, 8192^3 on a GPU) and LSTM-recurrence-sized
    ((B, H) x (H, 4H)) matmul rates, FLOP/s."""
    largest = 8192 if device.type == "cuda" else 2048
    f32, bf16 = (big_size(dtype, largest, device=device)
                 for dtype in (torch.float32, torch.bfloat16))
    return {
        "float32 big": matmul_rate(torch.float32, f32, f32, f32, device=device),
        "bf16 big": matmul_rate(torch.bfloat16, bf16, bf16, bf16, device=device),
        "float32 recurrent": matmul_rate(torch.float32, batch_size, hidden, 4 * hidden,
                                         device=device),
        "bf16 recurrent": matmul_rate(torch.bfloat16, batch_size, hidden, 4 * hidden,
                                      device=device),
    }


def floor_report(rates: Dict[str, float], batch_size: int = 32,
                 measured: Optional[Dict[str, float]] = None,
                 inference_s: Optional[Dict[str, float]] = None) -> str:
    """Markdown: per-part FLOPs, rates, and the floor of a batch fwd+bwd step per precision;
    with `inference_s`, also the floor of sliding-window inference per batch of windows.

    measured: {"float32": seconds, "bf16": seconds} of measured steps to compare with;
    inference_s: measured float32 seconds per batch of `batch_size` windows, keys "float32"
    (ours) and "pyannote".
    """
    parts = flops_per_chunk()
    total = sum(parts.values())
    recurrent = parts["lstm recurrent projections (frame by frame)"]
    lines = ["| part | forward GFLOP / 10 s chunk | share |", "| --- | ---: | ---: |"]
    for name, flops in parts.items():
        lines.append(f"| {name} | {flops / 1e9:.3f} | {100 * flops / total:.1f} % |")
    lines.append(f"| **total** | **{total / 1e9:.3f}** | 100 % |")
    conv0 = parts["sincnet conv0 (sinc 80x251, stride 10)"]
    step_flops = (3.0 * total - conv0) * batch_size
    inference = inference_flops_per_window(parts, batch_size)
    lines += ["", f"A batch-{batch_size} fwd+bwd step: {batch_size} x (3 x {total / 1e9:.2f} - "
              f"{conv0 / 1e9:.2f} sinc input gradient) = {step_flops / 1e9:.0f} GFLOP. "
              f"Inference, 10 s windows, 1 s step, batch {batch_size}, sinc convolution shared: "
              f"{inference / 1e9:.2f} GFLOP per window ({total / 1e9:.2f} per window without "
              "sharing).", "",
              "| precision | big mm GFLOP/s | (B,H)x(H,4H) mm GFLOP/s | bulk floor s | "
              "sequential floor s | measured step s | measured / sequential floor |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for precision in ("float32", "bf16"):
        big, small = rates[f"{precision} big"], rates[f"{precision} recurrent"]
        bulk = step_flops / big
        sequential = batch_size * ((3.0 * (total - recurrent) - conv0) / big
                                  + 3.0 * recurrent / small)
        step = (measured or {}).get(precision)
        tail = (f"{step:.2f} | {step / sequential:.1f}x" if step else "- | -")
        lines.append(f"| {precision} | {big / 1e9:.0f} | {small / 1e9:.0f} | {bulk:.3f} | "
                     f"{sequential:.3f} | {tail} |")
    if inference_s:
        lines += ["", inference_floor_report(rates, parts, batch_size, inference_s)]
    return "\n".join(lines)


def inference_floor_report(rates: Dict[str, float], parts: Dict[str, float], batch_size: int,
                           measured: Dict[str, float]) -> str:
    """Markdown: the float32 floor of inference per batch of windows (sinc convolution
    shared; "bulk" at the big-matmul rate, "sequential" with the recurrent part at the
    small-matmul rate) against our measured seconds per batch, and where half of
    pyannote's time (the 0.5x target) lies. Float32 only: in bf16 oneDNN's LSTM beats the
    (B, H) x (H, 4H) torch.mm rate, so the sequential model is no floor there."""
    recurrent = parts["lstm recurrent projections (frame by frame)"]
    flops = inference_flops_per_window(parts, batch_size) * batch_size
    bulk = flops / rates["float32 big"]
    sequential = ((flops - recurrent * batch_size) / rates["float32 big"]
                  + recurrent * batch_size / rates["float32 recurrent"])
    ours, theirs = measured["float32"], measured.get("pyannote")
    half = (f"{theirs / 2:.3f} | {theirs / 2 / sequential:.2f}x" if theirs else "- | -")
    return "\n".join([
        f"Float32 inference per batch of {batch_size} windows (10 s, 1 s step): "
        f"{flops / 1e9:.1f} GFLOP, of which {recurrent * batch_size / 1e9:.1f} frame-by-frame "
        "recurrent.", "",
        "| bulk floor s / batch | sequential floor s / batch | ours s / batch | "
        "ours / sequential floor | 0.5x pyannote's s / batch | that / sequential floor |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {bulk:.3f} | {sequential:.3f} | {ours:.3f} | {ours / sequential:.2f}x | {half} |"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--step-s", type=float, default=None, help="measured float32 step")
    parser.add_argument("--bf16-step-s", type=float, default=None, help="measured bf16 step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    measured = {k: v for k, v in (("float32", args.step_s), ("bf16", args.bf16_step_s)) if v}
    print(floor_report(measure_rates(args.batch_size), args.batch_size, measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
