"""avdiar command line: parses flags and hands over to the package that does the work.

    python run.py synth   ...  generate the synthetic audio-visual database   (data/)
    python run.py train   ...  train a model                                   (train/)
    python run.py eval    ...  evaluate a checkpoint on a protocol or RTTMs    (eval/)
    python run.py infer   ...  RTTM for audio files outside any protocol      (eval/)
    python run.py compare ...  one table across experiment folders            (eval/)
    python run.py demo    ...  synthetic data, four models, one comparison     (demo.py)
    python run.py weights ...  fetch pretrained files into the weights cache  (data/)
    python run.py video   ...  video files -> {uri}.npy face embeddings         (data/)
    python run.py prepare ...  AVA-AVD release -> wavs, embeddings, database    (data/)
    python run.py --model 6 --finetune ... (no subcommand): train, then evaluate
                                            as the old research scripts did.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, List, Optional

# subcommand -> (module that provides `add_arguments(parser)` and `main(args)`, help)
SUBCOMMANDS = {
    "synth": ("data.cli", "generate the synthetic audio-visual database"),
    "train": ("train.cli", "train a model (audio-only, 6 late, 7 early, 8 hybrid)"),
    "eval": ("eval.cli", "evaluate a checkpoint: sliding windows, diarization, DER report"),
    "infer": ("eval.infer_cli", "write RTTM for audio files that are in no protocol"),
    "compare": ("eval.compare_cli", "compare experiment folders in one table and chart"),
    "demo": ("demo", "synthetic database -> train 0, 6, 7, 8 -> evaluate -> compare"),
    "weights": ("data.weights_cli", "fetch the pretrained files once, sha256 checked"),
    "video": ("data.video_cli", "video files -> {uri}.npy face embeddings (+ wav) for --video-dir"),
    "prepare": ("data.prepare_cli", "dataset release (ava-avd) -> wavs, embeddings, database.yml"),
}


def _load(module_name: str):
    """Import a subcommand's module, or None when that part is not built yet."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = _load(module_name)
        if module is None:
            sub = subparsers.add_parser(name, help=f"{help_text} [not built yet]")
            sub.set_defaults(func=_not_built(name))
            continue
        sub = subparsers.add_parser(name, help=help_text)
        module.add_arguments(sub)
        sub.set_defaults(func=module.main)
    return parser


def _not_built(name: str) -> Callable[[argparse.Namespace], int]:
    def fail(args: argparse.Namespace) -> int:
        print(f"run.py {name}: not built yet (see the README's status table)", file=sys.stderr)
        return 2

    return fail


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") or any(a in ("-h", "--help") for a in argv[:1]):
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return 0
        return int(args.func(args) or 0)
    # No subcommand: the old research scripts' train-then-evaluate.
    train_cli, eval_cli = _load("train.cli"), _load("eval.cli")
    if train_cli is None:
        print("run.py: training is not built yet (see the README's status table)", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="run.py", description="train, then evaluate")
    train_cli.add_arguments(parser)
    args = parser.parse_args(argv)
    status = int(train_cli.main(args) or 0)
    if status != 0 or not getattr(args, "groundtruths", None):
        return status
    if eval_cli is None:
        print("run.py: evaluation is not built yet; trained only", file=sys.stderr)
        return 2
    return int(eval_cli.evaluate_after_training(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
