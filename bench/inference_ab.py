"""Sliding-window inference (eval.inference.infer_file) of this checkout against an earlier
commit's eval/inference.py, in turns, both with SincNet shared and per window.

    python bench/inference_ab.py                               # against 179fe49, CPU
    python bench/inference_ab.py --device cuda --threads 8 --minutes 30 --repeats 5
    git show 1b4cd20:eval/inference.py > /tmp/inference_1b4cd20.py   # then, on a GPU machine:
    python3 bench/inference_ab.py --device cuda --against /tmp/inference_1b4cd20.py --amp bf16

The audio-only model with segmentation-3.0's sizes (random weights) over one synthetic
file, 10 s windows every 1 s, batch 32, float32 (or --amp bf16). The earlier
eval/inference.py is loaded from `git show REV:eval/inference.py` (or from the file
--against names, where there is no git history); its imports (core/, the model) resolve in this
checkout, so this times the inference loop alone. Prints each way's median seconds per
file, the ratios this checkout / REV, and whether the outputs are identical.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench import floor  # noqa: E402
from bench.revision import load_file, load_revision  # noqa: E402
from bench.setups import audio_model, device_name  # noqa: E402
from bench.turns import in_turns  # noqa: E402
from bench.vs_pyannote import synthetic_recording  # noqa: E402
from eval.inference import infer_file  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", default="179fe49",
                        help="git revision to compare with, or a copy of its eval/inference.py")
    parser.add_argument("--amp", default="off", choices=["off", "bf16"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--minutes", type=float, default=3.0, help="file length")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = audio_model(device).eval()
    waveform = synthetic_recording(args.minutes)
    if Path(args.against).is_file():
        earlier = load_file(Path(args.against)).infer_file
    else:
        with tempfile.TemporaryDirectory() as folder:
            earlier = load_revision(args.against, "eval/inference.py", Path(folder)).infer_file
    outputs = {}

    def run(name: str, infer, share: bool):
        def go() -> None:
            outputs[name] = infer(model, waveform, step_ratio=0.1, device=device, amp=args.amp,
                                  share_sinc=share)
            floor.synchronize(device)
        return go

    runs = {}
    for path, share in (("shared", True), ("per-window", False)):
        runs[f"this checkout, {path}"] = run(f"this checkout, {path}", infer_file, share)
        runs[f"{args.against}, {path}"] = run(f"{args.against}, {path}", earlier, share)
    for go in runs.values():  # warm-up
        go()
    timings = in_turns(runs, args.repeats)
    where = device_name(device, args.threads)
    print(f"{args.minutes:g} min file, batch 32, amp {args.amp}; {where}; {args.repeats} repeats "
          "in turns")
    for name, timing in timings.items():
        seconds = ", ".join(f"{s:.3f}" for s in timing.seconds)
        print(f"  {name}: median {timing.median:.3f} s ({seconds}), "
              f"{timing.faults_per_run} minor page faults per run")
    for path in ("shared", "per-window"):
        ours, theirs = f"this checkout, {path}", f"{args.against}, {path}"
        same = (np.array_equal(outputs[ours].probabilities, outputs[theirs].probabilities)
                and np.array_equal(outputs[ours].activations, outputs[theirs].activations))
        print(f"  {path}: this checkout / {args.against} "
              f"{timings[ours].median / timings[theirs].median:.3f}x, outputs "
              f"{'identical' if same else 'DIFFERENT'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
