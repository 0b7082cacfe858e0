"""run.py compare EXP_DIR... [--out DIR]: one table (Markdown, CSV) and a DER bar chart."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiments", nargs="+", help="experiment folders {cdir}/{project}/{name}")
    parser.add_argument("--out", default=".", help="where comparison.{md,csv,png} go")


def main(args: argparse.Namespace) -> int:
    from eval.compare import compare

    try:
        path = compare(args.experiments, args.out)
    except ValueError as error:
        print(f"run.py compare: {error}", file=sys.stderr)
        return 2
    with open(path) as table:
        print(table.read())
    return 0
