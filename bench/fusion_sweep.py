"""The demo's comparison over many seeds and model variants, as paired differences.

For every seed: the demo's synthetic database and pretrained audio-only model
(`run.py demo` settings, in OUT/sS/), then every variant fine-tuned from that model with the
demo's settings plus the variant's own flags, and evaluated on the test split. The table
gives each variant's mean test DER (full-file, oracle clustering, collar 0; and local) and
its paired difference to the first variant (the reference, audio-only by default): mean,
standard deviation, wins, paired t and its two-sided p-value.

    python -m bench.fusion_sweep --out /tmp/sweep --seeds 0-7 --device cuda --parallel 12
    python -m bench.fusion_sweep --out /tmp/sweep --seeds 0-1 \\
        --variant audio=0 --variant late=6 --variant late-fixed=6:--no-learned-locality

A variant is NAME=MODEL[:FLAGS], FLAGS passed to `run.py` after the demo's (so they win).
Finished runs are reused: rerunning with more seeds or variants trains only what is new.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from eval import demo

DEFAULT_VARIANTS = ("audio=0", "late=6", "early=7", "hybrid=8",
                    "late-nolocal=6:--no-learned-locality",
                    "early-nolocal=7:--no-learned-locality",
                    "hybrid-nolocal=8:--no-learned-locality")
RESULT = re.compile(r"^(local|oracle)\s+(?:chunks|collar=0)\s+DER\s+([0-9.]+)%", re.M)


def parse_seeds(text: str) -> List[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    seeds: List[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds.extend(range(int(low), int(high or low) + 1))
    return seeds


def parse_variant(text: str) -> Tuple[str, str, List[str]]:
    """'late-fixed=6:--no-learned-locality' -> ('late-fixed', '6', ['--no-learned-locality'])."""
    name, sep, rest = text.partition("=")
    model, _, flags = rest.partition(":")
    if not sep or not name or model not in demo.MODELS:
        raise SystemExit(f"bench.fusion_sweep: --variant takes NAME=MODEL[:FLAGS] with MODEL "
                         f"in {sorted(demo.MODELS)}, got {text!r}")
    return name, model, shlex.split(flags)


def results(log: Path) -> Optional[Dict[str, float]]:
    """{'local': DER %, 'oracle': DER %} from a finished run's log, None if not there."""
    try:
        found = dict((kind, float(value)) for kind, value in RESULT.findall(log.read_text()))
    except OSError:
        return None
    return found if {"local", "oracle"} <= set(found) else None


def paired(reference: List[float], other: List[float]) -> str:
    """Mean, sd, wins, t and p of reference - other (positive: other has the lower DER)."""
    from scipy import stats

    diffs = [r - o for r, o in zip(reference, other)]
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else float("nan")
    wins = sum(d > 0 for d in diffs)
    if n > 1 and sd > 0:
        t, p = stats.ttest_rel(reference, other)
        return f"{mean:+.2f} | {sd:.2f} | {wins}/{n} | {t:.2f} | {p:.3f}"
    return f"{mean:+.2f} | {sd:.2f} | {wins}/{n} | | "


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="sweep folder")
    parser.add_argument("--seeds", default="0-3", help="e.g. 0-7 or 0,2,5 (default 0-3)")
    parser.add_argument("--variant", action="append", default=None,
                        help="NAME=MODEL[:FLAGS], repeatable; the first is the reference "
                             f"(default: {' '.join(DEFAULT_VARIANTS)})")
    parser.add_argument("--parallel", type=int, default=2, help="runs at once (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--table-only", action="store_true",
                        help="train nothing: tabulate the runs that finished")
    demo_parser = argparse.ArgumentParser()
    demo.add_arguments(demo_parser)
    for action in demo_parser._actions:  # the demo's settings (--steps, --device, ...)
        if action.dest not in ("help", "out", "seed", "models", "parallel"):
            parser._add_action(action)
    args = parser.parse_args()
    # evaluations look for WeSpeaker in the local cache only (as `make demo` does), instead
    # of spending ~25 s per run on Hub retries where the Hub is out of reach
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    variants = [parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS)]
    seeds = parse_seeds(args.seeds)
    out = Path(args.out)
    started = time.perf_counter()

    pretrain_jobs, jobs, where = [], [], {}
    for seed in seeds:
        seed_args = argparse.Namespace(**{**vars(args), "seed": seed})
        seed_out = out / f"s{seed}"
        yml = demo.database(seed_out, seed_args)
        pretrained = seed_out / "runs" / demo.PRETRAIN / "checkpoints" / "last.pt"
        if args.pretrain_steps and not pretrained.is_file():
            pretrain_jobs.append((f"s{seed}-{demo.PRETRAIN}", demo.train_argv(
                demo.PRETRAIN, "0", args.pretrain_steps, yml, seed_out, seed_args,
                evaluate=False)))
        for name, model, flags in variants:
            # run_jobs writes OUT/runs/{job}.log; the run's own folder is OUT/sS/runs/{name}
            job = f"s{seed}-{name}"
            where[seed, name] = out / "runs" / f"{job}.log"
            if results(where[seed, name]) is None:
                argv = demo.train_argv(name, model, args.steps, yml, seed_out, seed_args,
                                       pretrained if args.pretrain_steps else None)
                jobs.append((job, argv + flags))
    print(f"sweep: {len(pretrain_jobs)} pretraining runs, then {len(jobs)} fine-tuning runs, "
          f"{args.parallel} at a time", flush=True)
    if args.table_only:
        pretrain_jobs, jobs = [], []
    done = demo.run_jobs(pretrain_jobs, out, args.parallel, args.threads)
    done.update(demo.run_jobs(jobs, out, args.parallel, args.threads))
    failed = sorted(job for job, (status, _) in done.items() if status != 0)

    table = {(seed, name): results(where[seed, name]) for seed in seeds for name, _, _ in variants}
    ok_seeds = [s for s in seeds if all(table[s, name] for name, _, _ in variants)]
    reference = variants[0][0]
    if not ok_seeds:
        print(f"sweep: no seed has every variant finished; logs in {out / 'runs'}",
              file=sys.stderr)
        return 1
    lines = [f"{len(ok_seeds)} seeds ({', '.join(map(str, ok_seeds))}), demo settings "
             f"--steps {args.steps} --pretrain-steps {args.pretrain_steps} --lr-pretrained "
             f"{args.lr_pretrained:g} --device {args.device} (a variant's flags win); test DER %, "
             f"paired differences = {reference} - variant (positive: the variant is better)", "",
             "| variant | mean oracle | mean local | oracle diff: mean | sd | wins | t | p "
             "| local diff: mean | sd | wins | t | p |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, _, _ in variants:
        cols = []
        for kind in ("oracle", "local"):
            cols.append(sum(table[s, name][kind] for s in ok_seeds) / max(1, len(ok_seeds)))
        row = f"| {name} | {cols[0]:.2f} | {cols[1]:.2f} |"
        for kind in ("oracle", "local"):
            ref = [table[s, reference][kind] for s in ok_seeds]
            mine = [table[s, name][kind] for s in ok_seeds]
            row += " | | | | |" if name == reference else f" {paired(ref, mine)} |"
        lines.append(row)
    lines += ["", "Per seed, oracle / local:", "",
              "| variant | " + " | ".join(f"s{s}" for s in seeds) + " |",
              "|---|" + "---|" * len(seeds)]
    for name, _, _ in variants:
        cells = [f"{table[s, name]['oracle']:.1f} / {table[s, name]['local']:.1f}"
                 if table[s, name] else "-" for s in seeds]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (out / "sweep.md").write_text(text)
    print(text)
    print(f"sweep: {time.perf_counter() - started:.0f} s; table in {out / 'sweep.md'}")
    if failed:
        print(f"sweep: failed runs (logs in {out / 'runs'}): {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
