"""`python run.py synth --out DIR [--files N --minutes M --esize E --seed S --pairs P
--singles Q]`.

Writes the synthetic audio-visual database (see data/synthetic.py) and prints how to use
it: --database DIR/database.yml --protocol Synthetic.SpeakerDiarization.AV
--video-dir DIR/video.
"""

from __future__ import annotations

import argparse
import time

from core.models import add_esize_argument
from data.synthetic import LOOK_ALIKE_SPREAD, PROTOCOL, generate_database


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--files", type=int, default=6, help="files per split (default 6)")
    parser.add_argument("--minutes", type=float, default=4.0,
                        help="minutes of train audio, shared by its files (default 4)")
    parser.add_argument("--eval-minutes", type=float, default=None,
                        help="minutes of development and of test audio (default: --minutes)")
    add_esize_argument(parser, default=128, help="video embedding size, at least 8 (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_speaker_arguments(parser)


def add_speaker_arguments(parser: argparse.ArgumentParser) -> None:
    """--pairs, --singles, --look-alike-spread: the speakers of the synthetic database
    (also `run.py demo`'s)."""
    parser.add_argument("--pairs", type=int, default=4,
                        help="look-alike speaker pairs per split's speaker pool (default 4)")
    parser.add_argument("--singles", type=int, default=4,
                        help="other speakers per split's speaker pool (default 4)")
    parser.add_argument("--look-alike-spread", type=float, default=LOOK_ALIKE_SPREAD,
                        help="relative difference of look-alike voices in every voice "
                             f"parameter; 0 = identical voices (default {LOOK_ALIKE_SPREAD:g})")


def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        yml = generate_database(args.out, files=args.files, minutes=args.minutes,
                                eval_minutes=args.eval_minutes, esize=args.esize,
                                seed=args.seed, pairs=args.pairs, singles=args.singles,
                                look_alike_spread=args.look_alike_spread,
                                progress=True)
    except ValueError as error:
        print(f"run.py synth: {error}")
        return 2
    print(f"wrote {yml} in {time.perf_counter() - started:.1f} s; use it with\n"
          f"  --database {yml} --protocol {PROTOCOL} --video-dir {yml.parent / 'video'} "
          f"--esize {args.esize}")
    return 0
