"""Forward + backward time of the fusion models 6, 7, 8 relative to the audio-only model.

Real segmentation-3.0 sizes (LSTM 128 x 4 bidirectional, linear 128 x 2), batch 32 x 10 s,
video at 25 fps. All models are built in one process and timed in turns (bench/timing.py),
so they see the same machine state; medians over the rounds and ratios to model 0.

    python -m bench.models --threads 1 --rounds 3   # batch 32 x 10 s, model defaults
    python -m bench.models --threads 1 --rounds 3 --esize 384 --d-model 256 --ff-mult 4
"""

from __future__ import annotations

import argparse

import torch

from bench import timing
from core.models import build_model


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
    runs = {}
    for key in args.models.split(","):
        model = build_model(int(key), **({} if key == "0" else fusion)).to(device).train()

        def forward_backward(model=model) -> None:
            model.zero_grad(set_to_none=True)
            model(waveforms, video=video, video_mask=mask).mean().backward()
        runs[f"model {key}"] = forward_backward
    print(timing.machine_line(device))
    print(f"forward + backward, batch {args.batch} x {args.duration_s:g} s, esize {args.esize}, "
          f"{args.fps:g} fps, d_model {args.d_model}, layers {args.num_layers}, ff_mult "
          f"{args.ff_mult}, {args.rounds} rounds in turns (CPU time is the steadier measure "
          "on a shared machine with one thread)")
    timings = timing.in_turns(runs, args.rounds, args.warmup, device)
    print(timing.summary(timings, baseline="model 0" if "model 0" in runs else None))


if __name__ == "__main__":
    main()
