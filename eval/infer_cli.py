"""run.py infer: RTTM for audio files that are in no protocol.

    run.py infer --checkpoint CKPT --audio FILE|DIR [--video-dir DIR] --out DIR

Writes DIR/{uri}.rttm per file and DIR/all.rttm; no reference, so no scores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.constants import SAMPLE_RATE
from core.models import add_esize_argument, takes_video, video_size
from eval.cli import add_common_arguments, clustering_options, load_embedding, resolve_device


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


def main(args: argparse.Namespace) -> int:
    from core import load_pretrained
    from data.audio import read_audio_file
    from eval.embeddings import window_embeddings
    from eval.files import audio_files, find_video
    from eval.inference import infer_file
    from eval.pipeline import diarize
    from eval.reports import write_rttm

    try:
        device = resolve_device(args.device)
        files = audio_files(args.audio)
        model = load_pretrained(args.checkpoint, model=args.model, esize=args.esize,
                                revision=args.revision, token=args.hf_token,
                                map_location=str(device))
    except (ValueError, FileNotFoundError, PermissionError, ConnectionError) as error:
        print(f"run.py infer: {error}", file=sys.stderr)
        return 2
    embedding, reason = load_embedding(args.embedding, args.hf_token, device)
    if embedding is None:
        print(f"run.py infer: needs a speaker-embedding model: {reason}", file=sys.stderr)
        return 2
    out = Path(args.out)
    options = clustering_options(args)
    results = []
    for file in files:
        waveform = read_audio_file(file["audio"])
        video = (find_video(args.video_dir, file["uri"], video_size(model),
                            waveform.shape[-1] / SAMPLE_RATE, getattr(model, "video_fps", 25.0))
                 if takes_video(model) else None)
        windows = infer_file(model, waveform, video, step_ratio=args.step,
                             batch_size=args.batch_size, device=device,
                             progress=args.progress, desc=file["uri"], amp=args.amp)
        vectors = window_embeddings(embedding, waveform, windows, batch_size=args.batch_size,
                                    device=device, progress=args.progress)
        hypothesis = diarize(windows, uri=file["uri"], embeddings=vectors, options=options)
        write_rttm([hypothesis], str(out / f"{file['uri']}.rttm"))
        results.append(hypothesis)
        print(f"{file['uri']}: {len(hypothesis.labels())} speakers, "
              f"{hypothesis.get_timeline().support().duration():.1f} s of speech")
    write_rttm(results, str(out / "all.rttm"))
    return 0
