"""`python run.py demo [--out demo]`: the whole study in small, on the synthetic database.

1. generate the synthetic audio-visual database into {out}/db (kept and reused when its
   settings match; regenerated when they do not);
2. train the audio-only model and models 6 (late), 7 (early) and 8 (hybrid) from scratch,
   all with the same small backbone, data, seed and number of steps, into {out}/runs/{name}
   (TensorBoard logs, checkpoints, train.log); a model whose run already reached --steps is
   not trained again, only re-evaluated;
3. evaluate each on the test split: local (chunk) DER, full-file DER with oracle clustering,
   and the full pipeline when WeSpeaker weights can be loaded (RTTMs, reports, plots under
   {out}/runs/{name}/eval);
4. compare them in {out}/comparison.{md,csv,png} and print the table.

Everything is measured as it runs; nothing in the table is fixed in advance.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List

MODELS = {"0": "audio", "6": "late", "7": "early", "8": "hybrid"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo", help="demo folder (default: demo)")
    parser.add_argument("--models", default="0,6,7,8",
                        help="comma-separated model ids to train (default: 0,6,7,8)")
    parser.add_argument("--steps", type=int, default=300,
                        help="training steps per model (default: 300)")
    parser.add_argument("--batch-size", type=int, default=16, help="chunks per step (default 16)")
    parser.add_argument("--duration", type=float, default=5.0,
                        help="training chunk length in seconds (default 5)")
    parser.add_argument("--val-every", type=int, default=100,
                        help="steps between validations (default 100)")
    parser.add_argument("--workers", type=int, default=0,
                        help="data loader workers (default 0: the step, not the data, is slow)")
    parser.add_argument("--files", type=int, default=6, help="synthetic files per split")
    parser.add_argument("--minutes", type=float, default=4.0,
                        help="synthetic minutes of audio per split")
    parser.add_argument("--esize", type=int, default=128, help="synthetic video embedding size")
    parser.add_argument("--seed", type=int, default=0, help="database and training seed")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def database(out: Path, args: argparse.Namespace) -> Path:
    """{out}/db/database.yml, generated unless one with the same settings is there."""
    from data.synthetic import generate_database

    db = out / "db"
    wanted = {"files": args.files, "minutes": float(args.minutes), "esize": args.esize,
              "seed": args.seed}
    settings = db / "synthetic.json"
    if settings.is_file() and (db / "database.yml").is_file():
        saved = json.loads(settings.read_text())
        if all(saved.get(k) == v for k, v in wanted.items()):
            print(f"demo: reusing the synthetic database in {db}")
            return db / "database.yml"
        print(f"demo: {settings} has other settings; generating the database again")
    started = time.perf_counter()
    yml = generate_database(db, files=args.files, minutes=args.minutes, esize=args.esize,
                            seed=args.seed, progress=True)
    print(f"demo: synthetic database written to {db} in {time.perf_counter() - started:.0f} s")
    return Path(yml)


def train_argv(model_id: str, yml: Path, out: Path, args: argparse.Namespace) -> List[str]:
    """The run.py flags of one demo model (the old scripts' flags where they exist)."""
    return ["--model", model_id, "--name", f"model{model_id}", "--cdir", str(out),
            "--project", "runs", "--protocol", "Synthetic.SpeakerDiarization.AV",
            "--database", str(yml), "--video-dir", str(yml.parent / "video"),
            "--esize", str(args.esize), "--duration", str(args.duration),
            "--batch-size", str(args.batch_size), "--max-steps", str(args.steps),
            "--epochs", "100000", "--val-every", str(args.val_every),
            "--log-every", str(max(1, min(25, args.steps // 10))),
            "--workers", str(args.workers), "--seed", str(args.seed), "--device", args.device,
            "--lstm-hidden", "64", "--lstm-layers", "2", "--linear-hidden", "64",
            "--groundtruths", "test"]


def train_and_evaluate(argv: List[str]) -> int:
    """What `python run.py ARGV` does without a subcommand: train, then evaluate."""
    from eval import cli as eval_cli
    from train import cli as train_cli

    parser = argparse.ArgumentParser(prog="run.py")
    train_cli.add_arguments(parser)
    args = parser.parse_args(argv)
    status = int(train_cli.main(args) or 0)
    if status != 0:
        return status
    return int(eval_cli.evaluate_after_training(args) or 0)


def main(args: argparse.Namespace) -> int:
    from eval.compare import compare

    out = Path(args.out)
    ids = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in ids if m not in MODELS]
    if unknown or not ids:
        print(f"run.py demo: --models takes ids among {sorted(MODELS)}, got {args.models!r}",
              file=sys.stderr)
        return 2
    if args.steps < 1:
        print(f"run.py demo: --steps must be >= 1, got {args.steps}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    yml = database(out, args)
    timings: Dict[str, float] = {}
    for number, model_id in enumerate(ids, 1):
        print(f"\ndemo: [{number}/{len(ids)}] model {model_id} ({MODELS[model_id]}): "
              f"train {args.steps} steps, then evaluate on the test split", flush=True)
        t0 = time.perf_counter()
        status = train_and_evaluate(train_argv(model_id, yml, out, args))
        timings[model_id] = time.perf_counter() - t0
        if status != 0:
            print(f"run.py demo: model {model_id} failed (status {status}); see "
                  f"{out / 'runs' / f'model{model_id}' / 'train.log'}", file=sys.stderr)
            return status
        print(f"demo: model {model_id} done in {timings[model_id]:.0f} s", flush=True)
    table = compare([str(out / "runs" / f"model{m}") for m in ids], str(out))
    print()
    print(Path(table).read_text())
    print(f"demo: finished in {time.perf_counter() - started:.0f} s "
          f"({', '.join(f'model {m} {s:.0f} s' for m, s in timings.items())})")
    print(f"demo: table {out / 'comparison.md'} (also .csv, .png); per model: "
          f"{out / 'runs' / 'model<id>'}/ (train.log, tensorboard/, checkpoints/, eval/ with "
          f"RTTMs, reports and plots)")
    print(f"demo: tensorboard --logdir {out / 'runs'}")
    return 0
