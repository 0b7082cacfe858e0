"""Each CPU speed path against the plain path, end to end, in turns.

    python -m bench.speed_paths --threads 2 --part step --repeats 7
    python -m bench.speed_paths --threads 1 --part infer --minutes 3 --repeats 5

step: the training step (forward, NLL, backward, Adam) of the audio-only model with
segmentation-3.0's sizes, batch 32 x 10 s. infer: eval.inference.infer_file over one
synthetic file, 10 s windows every 1 s, batch 32, float32. Variants: "plain" (nn.LSTM in
one call, SincNet on every window), then each speed path alone, then all that apply.
Prints a Markdown table of medians and ratios to "plain".
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import torch

import core.backbone as backbone
from bench import timing
from bench.workloads import audio_model, synthetic_recording, training_step
from eval.inference import infer_file

PATHS = ("halves", "pieces", "uniform-dropout", "shared-sinc")


@contextlib.contextmanager
def only(enabled: set):
    """Within: the LSTM speed paths outside `enabled` replaced by nn.LSTM's call."""
    saved = (backbone.splits_batch, backbone.in_pieces, backbone.lstm_with_uniform_dropout)
    if "halves" not in enabled:
        backbone.splits_batch = lambda lstm, inputs: False
    if "pieces" not in enabled:
        backbone.in_pieces = lambda lstm, inputs: False
    if "uniform-dropout" not in enabled:
        backbone.lstm_with_uniform_dropout = lambda lstm, inputs: lstm(inputs)[0]
    try:
        yield
    finally:
        backbone.splits_batch, backbone.in_pieces, backbone.lstm_with_uniform_dropout = saved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["step", "infer"], required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=3.0, help="inference file length")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    model = audio_model(device)
    if args.part == "step":
        step = training_step(model, device)
        variants = {"plain": set(), "uniform-dropout": {"uniform-dropout"}}
        if args.threads >= 2:
            variants["halves"] = {"halves", "uniform-dropout"}

        def run(paths: set):
            def go():
                with only(paths):
                    step()
            return go
    else:
        model.eval()
        waveform = synthetic_recording(args.minutes)
        variants = {"plain": set(), "shared-sinc": {"shared-sinc"}}
        variants["pieces" if args.threads < 2 else "halves"] = (
            {"pieces"} if args.threads < 2 else {"halves"})
        variants["all"] = set(PATHS)

        def run(paths: set):
            def go():
                with only(paths):
                    infer_file(model, waveform, share_sinc="shared-sinc" in paths)
            return go

    print(timing.machine_line(device), flush=True)
    timings = timing.in_turns({name: run(paths) for name, paths in variants.items()},
                              args.repeats, args.warmup, verbose=True)
    print(f"\n{args.part}, {args.threads} threads, {args.repeats} repeats in turns"
          + (f", {args.minutes:g} min file" if args.part == "infer" else ", batch 32 x 10 s"))
    print(timing.summary(timings, baseline="plain"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
