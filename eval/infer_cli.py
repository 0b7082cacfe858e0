"""run.py infer: RTTM for audio files that are in no protocol.

    run.py infer --checkpoint CKPT --audio FILE|DIR [--video-dir DIR] --out DIR

Writes DIR/{uri}.rttm per file and DIR/all.rttm; no reference, so no scores. A file that
cannot be diarized (unreadable, empty, too short, a space in its name, bad video) is
named on stderr and left out; the others go on, and the exit code is 2 when any failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List

from core.constants import SAMPLE_RATE
from core.models import add_esize_argument, takes_video, video_size
from eval.cli import (
    add_common_arguments,
    clustering_options,
    error_line,
    load_embedding,
    output_folder,
    resolve_device,
    user_errors,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="our .pt or a pyannote checkpoint")
    parser.add_argument("--model", default=None, help="model around a pyannote checkpoint")
    add_esize_argument(parser, help="video embedding size of a fusion model built around a "
                                    "pyannote checkpoint (ours record their own)")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--hf-token", dest="hf_token", default=None)
    parser.add_argument("--audio", required=True, help="an audio file or a folder of them")
    parser.add_argument("--video-dir", default=None, help="folder of {uri}.npy embeddings")
    parser.add_argument("--out", required=True, help="output folder for RTTM files")
    add_common_arguments(parser)


def _diarize(model, embedding, file: Dict, args: argparse.Namespace, device):
    """The full pipeline's Annotation for one file; DataError (or another bad-input error)
    naming the file when it cannot be diarized."""
    from data.audio import read_audio_file
    from data.errors import DataError
    from eval.embeddings import window_embeddings
    from eval.files import audio_problem, find_video, min_samples
    from eval.inference import infer_file
    from eval.pipeline import diarize

    problem = audio_problem(file["audio"], min_samples(model))
    if problem:
        raise DataError(problem)
    waveform = read_audio_file(file["audio"])
    video = (find_video(args.video_dir, file["uri"], video_size(model),
                        waveform.shape[-1] / SAMPLE_RATE, getattr(model, "video_fps", 25.0))
             if takes_video(model) else None)
    windows = infer_file(model, waveform, video, step_ratio=args.step,
                         batch_size=args.batch_size, device=device,
                         progress=args.progress, desc=file["uri"], amp=args.amp)
    vectors = window_embeddings(embedding, waveform, windows, batch_size=args.batch_size,
                                device=device, progress=args.progress)
    return diarize(windows, uri=file["uri"], embeddings=vectors,
                   options=clustering_options(args))


def main(args: argparse.Namespace) -> int:
    from core import load_pretrained
    from eval.files import audio_files
    from eval.reports import write_rttm

    try:
        device = resolve_device(args.device)
        files = audio_files(args.audio)
        out = output_folder(args.out)
        model = load_pretrained(args.checkpoint, model=args.model, esize=args.esize,
                                revision=args.revision, token=args.hf_token,
                                map_location=str(device))
    except user_errors() as error:
        print(f"run.py infer: {error_line(error)}", file=sys.stderr)
        return 2
    embedding, reason = load_embedding(args.embedding, args.hf_token, device)
    if embedding is None:
        print(f"run.py infer: needs a speaker-embedding model: {reason}", file=sys.stderr)
        return 2
    results: List = []
    failed: List[str] = []
    for file in files:
        try:
            hypothesis = _diarize(model, embedding, file, args, device)
            write_rttm([hypothesis], str(out / f"{file['uri']}.rttm"))
        except user_errors() as error:
            failed.append(file["audio"])
            print(f"run.py infer: {error_line(error)}", file=sys.stderr)
            continue
        results.append(hypothesis)
        print(f"{file['uri']}: {len(hypothesis.labels())} speakers, "
              f"{hypothesis.get_timeline().support().duration():.1f} s of speech")
    write_rttm(results, str(Path(out) / "all.rttm"))
    if failed:
        print(f"run.py infer: {len(failed)} of {len(files)} file(s) failed and are not in "
              f"{out / 'all.rttm'}: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0
