"""`python run.py synth --out DIR [--files N --minutes M --esize E --seed S --pairs P
--singles Q --speech DIR|synthetic]`.

Writes the synthetic audio-visual database (see data/synthetic.py), its speech from
LibriSpeech (../shared/real/librispeech, when it is there) or from synthetic voices, says
which, and prints how to use it: --database DIR/database.yml --protocol
Synthetic.SpeakerDiarization.AV --video-dir DIR/video.
"""

from __future__ import annotations

import argparse
import time

from core.models import add_esize_argument
from data.real_speech import DEFAULT_DIR, resolve_speech
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
    """--pairs, --singles, --look-alike-spread, --speech: the speakers of the synthetic
    database (also `run.py demo`'s; pass `speech_source(args.speech)` on)."""
    parser.add_argument("--pairs", type=int, default=None,
                        help="look-alike speaker pairs per split's speaker pool (default: 4 "
                             "with synthetic voices; with LibriSpeech a third of the split's "
                             "readers, paired by sex and closest long-term spectrum)")
    parser.add_argument("--singles", type=int, default=None,
                        help="other speakers per split's speaker pool (default: 4 with "
                             "synthetic voices; with LibriSpeech every reader not in a pair)")
    parser.add_argument("--look-alike-spread", type=float, default=LOOK_ALIKE_SPREAD,
                        help="relative difference of look-alike synthetic voices in every "
                             "voice parameter; 0 = identical voices (default "
                             f"{LOOK_ALIKE_SPREAD:g})")
    parser.add_argument("--speech", default=None, metavar="DIR|synthetic",
                        help="where the speech comes from: a LibriSpeech folder holding "
                             "librispeech_train-clean-100 and librispeech_test-other, or "
                             f"'synthetic' voices (default: {DEFAULT_DIR} when it is there, "
                             "else synthetic)")


def speech_source(value) -> str:
    """`--speech` resolved for generate_database: "synthetic" or a LibriSpeech folder."""
    return resolve_speech(value)


def describe_speech(speech: str) -> str:
    """One line saying where the speech comes from."""
    if speech == "synthetic":
        return f"speech: synthetic voices (data/voice.py; no LibriSpeech at {DEFAULT_DIR})" \
            if not DEFAULT_DIR.is_dir() else "speech: synthetic voices (data/voice.py)"
    return (f"speech: LibriSpeech from {speech} (train and development: train-clean-100 "
            f"readers, test: test-other readers)")


def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        speech = speech_source(args.speech)
        print(describe_speech(speech))
        yml = generate_database(args.out, files=args.files, minutes=args.minutes,
                                eval_minutes=args.eval_minutes, esize=args.esize,
                                seed=args.seed, pairs=args.pairs, singles=args.singles,
                                look_alike_spread=args.look_alike_spread, speech=speech,
                                progress=True)
    except ValueError as error:
        print(f"run.py synth: {error}")
        return 2
    print(f"wrote {yml} in {time.perf_counter() - started:.1f} s ({describe_speech(speech)}); "
          f"use it with\n  --database {yml} --protocol {PROTOCOL} --video-dir "
          f"{yml.parent / 'video'} --esize {args.esize}")
    return 0
