"""The speed paths (core/speed.py) against the plain path, end to end, in turns.

    python -m bench.speed_paths --threads 2 --repeats 7
    python -m bench.speed_paths --threads 1 --minutes 3 --repeats 7
    python -m bench.speed_paths --device cuda --threads 8 --minutes 10 --repeats 5

Every speed path left is inference-side, so the benchmark is sliding-window inference of
a whole file (eval.inference.infer_file): the audio-only model with segmentation-3.0's
sizes (random weights) over one synthetic file, 10 s windows every 1 s, batch 32,
float32 (or --amp bf16), with the switch off ("plain") and on ("speed paths"), in turns
(bench/timing.py). A path is kept only while the ratio stays at or below 1 / 1.2.
Prints the machine line, a Markdown table of medians and ratios, and the largest
probability difference between the two.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from bench import timing
from bench.workloads import audio_model, synthetic_recording
from core import speed
from eval.inference import infer_file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=3.0, help="file length")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--amp", default="off", choices=["off", "bf16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench.speed_paths --device cuda: torch sees no CUDA device")
    device = torch.device(args.device)
    model = audio_model(device).eval()
    waveform = synthetic_recording(args.minutes)
    outputs = {}

    def run(name: str, on: bool):
        def go() -> None:
            with speed.speed_paths(on):
                outputs[name] = infer_file(model, waveform, step_ratio=0.1,
                                           batch_size=args.batch_size, device=device,
                                           amp=args.amp)
        return go

    print(timing.machine_line(device, args.threads), flush=True)
    timings = timing.in_turns({"plain": run("plain", False),
                               "speed paths": run("speed paths", True)},
                              args.repeats, args.warmup, device, verbose=True)
    difference = np.abs(outputs["plain"].probabilities
                        - outputs["speed paths"].probabilities).max()
    print(f"\ninference, {args.minutes:g} min file, 10 s windows / 1 s step, batch "
          f"{args.batch_size}, amp {args.amp}, {args.repeats} repeats in turns after "
          f"{args.warmup} warm-up")
    print(timing.summary(timings, baseline="plain"))
    print(f"max probability difference, speed paths vs plain: {difference:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
