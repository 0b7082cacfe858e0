"""Whole-file inference with the CPU LSTM in pieces (core/lstm_pieces.py) and in one call,
in turns in one process.

    python bench/lstm_pieces.py --threads 1            # where pieces apply
    python bench/lstm_pieces.py --threads 2 --amp bf16

The audio-only model (segmentation-3.0 sizes, random weights) over a synthetic file, 10 s
windows, 1 s step, batch 32. "one call" sets core.lstm_pieces.FRAMES_PER_CALL so high that
every batch is one library call. Prints the median and best seconds per file and the minor
page faults per file of each, and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import core.lstm_pieces as lstm_pieces  # noqa: E402
from bench.setups import audio_model  # noqa: E402
from bench.turns import in_turns  # noqa: E402
from eval.inference import infer_file  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=3.0, help="file length")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--amp", default="off", choices=["off", "bf16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = audio_model(torch.device("cpu")).eval()
    waveform = 0.1 * torch.randn(1, int(16000 * 60 * args.minutes))
    settings = {"pieces": lstm_pieces.FRAMES_PER_CALL, "one call": 10 ** 12}

    def run(frames_per_call: int):
        def infer() -> None:
            lstm_pieces.FRAMES_PER_CALL = frames_per_call
            infer_file(model, waveform, amp=args.amp)
        return infer

    infer_file(model, waveform, amp=args.amp)  # warm-up
    timings = in_turns({name: run(value) for name, value in settings.items()}, args.repeats)
    lstm_pieces.FRAMES_PER_CALL = settings["pieces"]
    print(f"{args.minutes:g} min file, {args.threads} threads, amp {args.amp}, "
          f"{args.repeats} repeats in turns")
    for name, timed in timings.items():
        print(f"  {name}: median {timed.median:.2f} s, best {min(timed.seconds):.2f} s, "
              f"{timed.faults_per_run} page faults per file")
    ratio = timings["pieces"].median / timings["one call"].median
    print(f"  pieces / one call: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
