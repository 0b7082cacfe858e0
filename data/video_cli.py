"""`python run.py video INPUT... --out DIR`: video files -> {uri}.npy face embeddings for
--video-dir, plus {uri}.wav (16 kHz mono), {uri}.speaking.npy and {uri}.tracks.json.

The uri is the file name without its extension. A file whose {uri}.npy exists is skipped
(--overwrite redoes it). A file that cannot be used gets one line on stderr and no output;
the exit status is 1 when any file failed. See data/video_frontend.py for the steps.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from data.video_frontend import FrontendSettings


def add_frontend_arguments(parser: argparse.ArgumentParser) -> None:
    """The front end's settings (shared with `run.py prepare`)."""
    d = FrontendSettings()
    g = parser.add_argument_group("video front end")
    g.add_argument("--faces", type=int, default=d.faces,
                   help=f"face slots per frame; esize = 128 x faces (default {d.faces})")
    g.add_argument("--detect-every", type=int, default=d.detect_every,
                   help=f"run the face detector on every k-th frame (default {d.detect_every})")
    g.add_argument("--detect-height", type=int, default=d.detect_height,
                   help=f"frame height for detection, pixels (default {d.detect_height})")
    g.add_argument("--min-face", type=float, default=d.min_face,
                   help=f"smallest face searched, pixels at --detect-height (default "
                        f"{d.min_face:g})")
    g.add_argument("--asd-weights", default=None,
                   help="Light-ASD checkpoint (default: $AVDIAR_WEIGHTS/light-asd/"
                        "pretrain_AVA_CVPR.model, then ../shared/real/light-asd/)")
    g.add_argument("--device", default="cpu", help="torch device (default cpu)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch threads per process (default: torch's choice)")


def frontend_settings(args: argparse.Namespace) -> FrontendSettings:
    return FrontendSettings(faces=args.faces, detect_every=args.detect_every,
                            detect_height=args.detect_height, min_face=args.min_face)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="video files (mp4, mkv, avi, ...)")
    parser.add_argument("--out", required=True, help="output folder (the --video-dir)")
    parser.add_argument("--wav-dir", default=None,
                        help="where {uri}.wav goes (default: --out)")
    parser.add_argument("--no-wav", action="store_true", help="do not write {uri}.wav")
    parser.add_argument("--overwrite", action="store_true", help="redo files already done")
    add_frontend_arguments(parser)


def main(args: argparse.Namespace) -> int:
    import torch

    from data.index import DataError
    from data.video_frontend import VideoFrontend, write_outputs

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    try:
        frontend = VideoFrontend(frontend_settings(args), asd_weights=args.asd_weights,
                                 device=args.device)
        frontend.detector  # fetch and load MTCNN's weights now, not halfway through a file
    except (ValueError, OSError, RuntimeError) as error:
        print(f"run.py video: {error}", file=sys.stderr)
        return 2
    failed = 0
    for name in args.inputs:
        uri = Path(name).stem
        if (out / f"{uri}.npy").is_file() and not args.overwrite:
            print(f"{uri}: {out / (uri + '.npy')} exists, skipped (--overwrite redoes it)")
            continue
        started = time.perf_counter()
        try:
            result = frontend.process(name, log=lambda line: print(line, file=sys.stderr))
            wav = None if args.no_wav else Path(args.wav_dir or out) / f"{uri}.wav"
            path = write_outputs(result, out, uri, wav_path=wav)
        except (DataError, OSError) as error:
            print(f"run.py video: {error}", file=sys.stderr)
            failed += 1
            continue
        info = result.info
        slotted = sum(t["slot"] is not None for t in info["tracks"])
        print(f"{uri}: {info['frames']} frames, {len(info['tracks'])} face tracks "
              f"({slotted} in slots), {100 * info['frames_with_face'] / info['frames']:.1f} % "
              f"of frames with a face, {time.perf_counter() - started:.1f} s -> {path}")
    return 1 if failed else 0
