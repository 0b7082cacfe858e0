"""`python run.py prepare ava-avd DATASET_DIR --out DIR [--workers N]`: a dataset's release
layout -> wavs, {uri}.npy video embeddings, lists/RTTM/UEM and a database.yml.

Then train as the original study did, e.g.

    python run.py --groundtruths test --finetune --model 6 --esize 384 --project both13 \\
        --name model_6_late_fusion --cdir exp --epochs 50 \\
        --protocol AVA-AVD.SpeakerDiarization.data --database DIR/database.yml --video-dir DIR/video

Resumable: rerun the same command after an interruption; clips already done are skipped.
"""

from __future__ import annotations

import argparse
import sys
import time

from data.video_cli import add_frontend_arguments, frontend_settings

DATASETS = ("ava-avd",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=DATASETS, help="which dataset's layout")
    parser.add_argument("dataset_dir", help="the release folder (AVA-AVD: the one with split/)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--workers", type=int, default=1,
                        help="clips prepared at once, one process each (default 1)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar")
    add_frontend_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from data.ava_avd import PROTOCOL, prepare_ava_avd
    from data.index import DataError

    started = time.perf_counter()
    try:
        yml = prepare_ava_avd(args.dataset_dir, args.out, settings=frontend_settings(args),
                              asd_weights=args.asd_weights, device=args.device,
                              workers=args.workers, threads=args.threads,
                              progress=args.progress)
    except (DataError, ValueError, OSError) as error:
        print(f"run.py prepare: {error}", file=sys.stderr)
        return 2
    print(f"wrote {yml} in {time.perf_counter() - started:.1f} s; train with\n"
          f"  --protocol {PROTOCOL} --database {yml} --video-dir {yml.parent / 'video'} "
          f"--esize {128 * args.faces}")
    return 0
