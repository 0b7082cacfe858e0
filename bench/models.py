"""Forward + backward time of the fusion models 6, 7, 8 relative to the audio-only model.

Real segmentation-3.0 sizes (LSTM 128 x 4 bidirectional, linear 128 x 2), batch 32 x 10 s,
video at 25 fps. All models are built in one process and timed round-robin (one step of
each per round), so they see the same machine state; the median over rounds is reported.

    python -m bench.models --threads 1 --rounds 3   # batch 32 x 10 s, model defaults
    python -m bench.models --threads 1 --rounds 3 --esize 384 --d-model 256 --ff-mult 4
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Tuple

import torch

from core.models import build_model


def step(model: torch.nn.Module, waveforms: torch.Tensor, video: torch.Tensor,
         mask: torch.Tensor) -> Tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for one forward + backward pass.

    CPU time is the steadier measure on a machine shared with other jobs (use --threads 1
    there: with several threads, waiting threads spin and count as CPU time too).
    """
    model.zero_grad(set_to_none=True)
    start, start_cpu = time.perf_counter(), time.process_time()
    model(waveforms, video=video, video_mask=mask).mean().backward()
    if waveforms.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - start_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--esize", type=int, default=512)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--ff-mult", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--models", default="0,6,7,8")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    num_samples = int(args.duration_s * 16000)
    num_video = round(args.duration_s * args.fps)
    waveforms = torch.randn(args.batch, 1, num_samples, device=device)
    video = torch.randn(args.batch, num_video, args.esize, device=device)
    mask = torch.rand(args.batch, num_video, device=device) > 0.2
    fusion = dict(esize=args.esize, video_fps=args.fps, d_model=args.d_model,
                  num_layers=args.num_layers, ff_mult=args.ff_mult)
    models = {}
    for key in args.models.split(","):
        model = build_model(int(key), **({} if key == "0" else fusion)).to(device).train()
        models[int(key)] = model
    times = {key: [] for key in models}
    for round_ in range(args.warmup + args.rounds):
        for key, model in models.items():
            measured = step(model, waveforms, video, mask)
            if round_ >= args.warmup:
                times[key].append(measured)
    print(f"device {device}, threads {torch.get_num_threads()}, batch {args.batch} x "
          f"{args.duration_s:g} s, esize {args.esize}, {args.fps:g} fps, d_model {args.d_model},"
          f" layers {args.num_layers}, ff_mult {args.ff_mult}, {args.rounds} rounds")
    medians = {key: [statistics.median(m[i] for m in values) for i in (0, 1)]
               for key, values in times.items()}
    for key, (wall, cpu) in medians.items():
        base = medians.get(0)
        ratios = (f"{wall / base[0]:.3f}x wall, {cpu / base[1]:.3f}x cpu" if base else "-")
        params = sum(p.numel() for p in models[key].parameters())
        print(f"model {key}: median {wall:7.2f} s wall {cpu:7.2f} s cpu  ratio {ratios}  "
              f"params {params:,}", flush=True)


if __name__ == "__main__":
    main()
