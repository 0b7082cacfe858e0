"""`run.py train` flags (also the flags of `run.py` with no subcommand: train, then evaluate).

The old research scripts' flags work unchanged: --model 6 --finetune --esize 384
--project P --name N --cdir D --epochs 50 --protocol X --groundtruths test.
"""

from __future__ import annotations

import argparse
import sys

from core.constants import AMP_MODES
from core.models import MODEL_CHOICES, add_esize_argument
from core.parts import PARTS
from train.config import SCHEDULERS, Config


def _optional_float(text: str):
    return None if text.lower() in ("none", "off", "0", "0.0") else float(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every field of train.config.Config as a flag (dest = field name)."""
    d = Config()
    g = parser.add_argument_group("model")
    g.add_argument("--model", default=d.model,
                   help=f"{MODEL_CHOICES} (default: audio)")
    g.add_argument("--finetune", action="store_true",
                   help="start from --checkpoint's weights (fusion parts start as identity)")
    g.add_argument("--checkpoint", default=d.checkpoint,
                   help="pretrained weights for --finetune: Hub id, file or folder "
                        "(default: %(default)s)")
    g.add_argument("--revision", default=None, help="Hub revision of --checkpoint")
    g.add_argument("--hf-token", dest="hf_token", default=None,
                   help="Hugging Face token for gated repos (default: $HF_TOKEN)")
    add_esize_argument(g)
    g.add_argument("--modality-dropout", type=float, default=None,
                   help="probability of dropping a chunk's whole video in training")
    g.add_argument("--lstm-hidden", type=int, default=None, help="LSTM hidden size")
    g.add_argument("--lstm-layers", type=int, default=None, help="LSTM layers")
    g.add_argument("--lstm-dropout", type=float, default=None, help="dropout between LSTM layers")
    g.add_argument("--linear-hidden", type=int, default=None, help="feed-forward width")
    g.add_argument("--d-model", type=int, default=None, help="co-attention width")
    g.add_argument("--fusion-layers", type=int, default=None, help="co-attention layers")
    g.add_argument("--fusion-heads", type=int, default=None, help="co-attention heads")
    g.add_argument("--video-centering", action=argparse.BooleanOptionalAction, default=None,
                   help="subtract each chunk's mean video embedding, so that the fusion "
                        "models read what changes (mouths) rather than whose face it is "
                        "(default: on for new fusion models)")
    g.add_argument("--learned-locality", action=argparse.BooleanOptionalAction, default=None,
                   help="every co-attention head adds -|t_audio - t_video| / tau_h to its "
                        "logits, with tau_h learned, starting from 0.04 to 5 s across heads "
                        "(default: on for new fusion models, unless --locality-tau)")
    g.add_argument("--locality-tau", type=float, default=None,
                   help="seconds: co-attention logits get -|t_audio - t_video| / tau, so a "
                        "frame prefers video near its own time (default: off)")

    g = parser.add_argument_group("data")
    g.add_argument("--protocol", default=None, help="pyannote.database protocol")
    g.add_argument("--database", default=None,
                   help="database.yml (default: $PYANNOTE_DATABASE_CONFIG)")
    g.add_argument("--video-dir", default=None, help="folder of {uri}.npy video embeddings")
    g.add_argument("--video-fps", type=float, default=d.video_fps)
    g.add_argument("--duration", type=float, default=None,
                   help="chunk duration in seconds (default: the checkpoint's, else 10)")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="chunks per GPU per step")
    g.add_argument("--workers", type=int, default=d.workers, help="data workers per GPU")

    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=d.epochs)
    g.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    g.add_argument("--lr", type=float, default=d.lr, help="learning rate (Adam)")
    g.add_argument("--lr-pretrained", type=float, default=None,
                   help="learning rate of the pretrained parts: SincNet, LSTM, linear "
                   "layers, classifier (default: --lr; when fine-tuning fusion models a tenth "
                   "of --lr kept their audio path and let models 6 and 8 beat audio-only in "
                   "the demo, README)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--scheduler", default=d.scheduler, choices=list(SCHEDULERS))
    g.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    g.add_argument("--grad-clip", type=_optional_float, default=d.grad_clip,
                   help="max gradient norm, 0 for none (default: %(default)s)")
    g.add_argument("--amp", default=d.amp, choices=list(AMP_MODES))
    g.add_argument("--freeze", default="",
                   help=f"parts to keep fixed: {','.join(PARTS)} (comma-separated)")
    g.add_argument("--freeze-lstm", action="store_true", help="same as --freeze lstm")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--device", default=d.device, choices=["auto", "cpu", "cuda"])

    g = parser.add_argument_group("validation, checkpoints, stopping")
    g.add_argument("--val-every", type=int, default=None,
                   help="steps between validations (default: every epoch)")
    g.add_argument("--no-val-at-start", dest="val_at_start", action="store_false",
                   help="skip the step-0 validation")
    g.add_argument("--patience", type=int, default=None,
                   help="stop after this many validations without a better DER")
    g.add_argument("--checkpoint-every", type=int, default=None,
                   help="also keep checkpoints/step-N.pt every this many steps")
    g.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints,
                   help="how many step-N.pt to keep (0: all)")
    g.add_argument("--resume", default=d.resume,
                   help="auto (newest checkpoint of the experiment, if any), never, or a PATH")
    g.add_argument("--exact-resume", action=argparse.BooleanOptionalAction,
                   default=d.exact_resume,
                   help="on CUDA, re-seed cuDNN's LSTM dropout before every step so that a "
                        "resumed run is bit-identical to an uninterrupted one (costs about 9 %% "
                        "of a batch-32 bf16 step on an H100); --no-exact-resume: a resumed run "
                        "draws other dropout masks (default: on)")
    g.add_argument("--max-nonfinite", type=int, default=d.max_nonfinite,
                   help="stop after this many non-finite losses in a row")
    g.add_argument("--log-every", type=int, default=d.log_every, help="steps between log lines")

    g = parser.add_argument_group("experiment folder {cdir}/{project}/{name}")
    g.add_argument("--cdir", default=d.cdir)
    g.add_argument("--project", default=d.project)
    g.add_argument("--name", default=None, help="default: from the settings, e.g. late-ft-e384")

    g = parser.add_argument_group("evaluation after training (run.py without subcommand)")
    g.add_argument("--groundtruths", default=None,
                   help="'test' (the protocol's test set) or FILE.rttm: evaluate after training")
    g.add_argument("--collar", type=float, default=d.collar, help="DER collar in seconds")
    g.add_argument("--skip-overlap", action="store_true", help="DER without overlapped speech")


def main(args: argparse.Namespace) -> int:
    """Train from parsed flags. Sets args.experiment_dir and args.trained_checkpoint
    (best.pt, else last.pt) for evaluate_after_training; args.groundtruths is cleared when
    the run stopped early for preemption, so nothing is evaluated before it completes."""
    from train.checkpoint import CheckpointError
    from train.loop import train

    try:
        config = Config.from_args(args)
    except ValueError as error:
        print(f"run.py train: {error}", file=sys.stderr)
        return 2
    try:
        result = train(config)
    except (ValueError, FileNotFoundError, CheckpointError, PermissionError,
            ConnectionError) as error:  # bad settings, files or checkpoints: no traceback
        print(f"run.py train: {error}", file=sys.stderr)
        return 2
    args.experiment_dir = str(config.experiment_dir)
    args.trained_checkpoint = result.get("best_checkpoint") or result.get("last_checkpoint")
    args.preempted = bool(result.get("preempted"))
    if args.preempted or result.get("status", 0) != 0:
        args.groundtruths = None
    return int(result.get("status", 0))
