"""Training throughput: steps/s, chunks/s and the fraction of time spent waiting for data,
for the audio-only model and fusion models 6, 7, 8, through the real loop (train.loop.train)
and the real data pipeline on a generated synthetic database.

    python -m bench.train                          # CPU or the GPU, batch 32 x 10 s
    python -m bench.train --device cuda --amp bf16 --steps 20 --workers 8
    python -m bench.train --toy                    # in-memory data (no audio decoding)

Each model runs 2 x --steps steps with a TensorBoard window of --steps: the first window
(start-up, first batches) is discarded, the second is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.timing import machine_line
from train.config import Config
from train.loop import train
from train.toydata import toy_factory


def read_window(experiment: Path, step: int) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(experiment / "tensorboard"))
    acc.Reload()
    values = {}
    for tag in ("perf/chunks_per_s", "perf/data_wait_fraction", "memory/max_allocated_gib"):
        if tag in acc.Tags()["scalars"]:
            values[tag] = next(e.value for e in acc.Scalars(tag) if e.step == step)
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="audio,late,early,hybrid")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=3, help="steps per measured window")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"])
    parser.add_argument("--esize", type=int, default=384)
    parser.add_argument("--toy", action="store_true", help="in-memory data instead of files")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="avdiar-bench-"))
    common = dict(batch_size=args.batch_size, duration=args.duration, esize=args.esize,
                  max_steps=2 * args.steps, log_every=args.steps, val_every=10 ** 9,
                  val_at_start=False, epochs=10 ** 6, workers=args.workers, device=args.device,
                  amp=args.amp, cdir=str(work / "exp"), resume="never")
    factory = None
    if args.toy:
        factory = toy_factory(batches_per_epoch=10 ** 6, val_batches=1)
    else:
        from data import generate_database

        minutes = max(2.0, args.batch_size * args.duration * 2 * args.steps / 60 / 4)
        database = generate_database(work / "db", files=3, minutes=minutes,
                                     eval_minutes=0.5, esize=args.esize, seed=0)
        common.update(protocol="Synthetic.SpeakerDiarization.AV", database=str(database),
                      video_dir=str(work / "db" / "video"))
    device = "cuda" if args.device == "cuda" or (
        args.device == "auto" and torch.cuda.is_available()) else "cpu"
    name = torch.cuda.get_device_name(0) if device == "cuda" else (
        f"CPU, {torch.get_num_threads()} threads")
    print(machine_line(torch.device(device)))
    print(f"device: {name}; batch {args.batch_size} x {args.duration:g} s; amp {args.amp}; "
          f"data {'in memory' if args.toy else f'synthetic files, {args.workers} workers'}")
    print(f"{'model':<8}{'steps/s':>10}{'chunks/s':>10}{'data wait':>11}{'max GiB':>9}"
          f"{'wall s':>8}")
    rows = []
    for model in args.models.split(","):
        start = time.perf_counter()
        config = Config(model=model, name=model, **common)
        with contextlib.redirect_stdout(io.StringIO()):  # the loop's progress lines
            result = train(config, factory)
        if result["status"] != 0 or result["preempted"] or result["step"] < 2 * args.steps:
            print(f"{config.model}: the run stopped early at step {result['step']}; "
                  f"see {config.experiment_dir / 'train.log'}", file=sys.stderr)
            return 1
        window = read_window(config.experiment_dir, 2 * args.steps)
        chunks = window["perf/chunks_per_s"]
        row = {"model": config.model, "steps_per_s": chunks / args.batch_size,
               "chunks_per_s": chunks, "data_wait_fraction": window["perf/data_wait_fraction"],
               "max_allocated_gib": window.get("memory/max_allocated_gib", float("nan")),
               "wall_s": time.perf_counter() - start, "device": name, "amp": args.amp,
               "batch_size": args.batch_size, "duration_s": args.duration}
        rows.append(row)
        print(f"{row['model']:<8}{row['steps_per_s']:>10.3f}{chunks:>10.1f}"
              f"{row['data_wait_fraction']:>10.1%}{row['max_allocated_gib']:>9.2f}"
              f"{row['wall_s']:>8.0f}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
