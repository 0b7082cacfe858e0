"""The model a run trains: new from the flags, fine-tuned from --checkpoint, or rebuilt from
a training checkpoint's hparams; and the seeding that makes its initialisation repeatable.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, Dict, Optional

import numpy as np
import torch

from core import build_model, load_pretrained
from core.models import checkpoint_hparams
from core.pretrained import CheckpointMismatchError
from core.safe_pickle import CorruptCheckpointError, UnsafeCheckpointError
from train.checkpoint import CheckpointError
from train.config import Config


def seed_all(*parts: Any) -> None:
    """Seed python, numpy and torch from a stable hash of `parts` (e.g. seed, rank)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    seed = int.from_bytes(digest[:4], "little")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_model(config: Config, saved_hparams: Optional[Dict[str, Any]] = None) -> torch.nn.Module:
    """The model: rebuilt from a checkpoint's hparams, loaded (--finetune), or new.

    A --checkpoint that is corrupt, unsafe or does not fit raises CheckpointError (one line
    naming the file)."""
    if saved_hparams is not None:
        return build_model(**checkpoint_hparams(saved_hparams))
    backbone: Dict[str, Any] = {}
    lstm = {k: v for k, v in (("hidden_size", config.lstm_hidden),
                              ("num_layers", config.lstm_layers),
                              ("dropout", config.lstm_dropout)) if v is not None}
    if lstm:
        backbone["lstm"] = lstm
    if config.linear_hidden is not None:
        backbone["linear"] = {"hidden_size": config.linear_hidden}
    fusion = {k: v for k, v in (("d_model", config.d_model), ("num_layers", config.fusion_layers),
                                ("num_heads", config.fusion_heads),
                                ("locality_tau_s", config.locality_tau),
                                ("video_centering", config.video_centering),
                                ("learned_locality", config.learned_locality),
                                ("modality_dropout", config.modality_dropout)) if v is not None}
    if config.finetune:
        if backbone:
            raise ValueError("--lstm-*/--linear-hidden change the pretrained architecture; "
                             "they cannot be used with --finetune")
        try:
            model = load_pretrained(config.checkpoint, model=config.model, esize=config.esize,
                                    revision=config.revision, token=config.hf_token,
                                    video_fps=config.video_fps, **fusion)
        except (CorruptCheckpointError, UnsafeCheckpointError, CheckpointMismatchError) as error:
            text = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
            raise CheckpointError(f"--finetune --checkpoint: {text}") from error
        if config.duration is not None:
            model.duration_s = float(config.duration)
        return model
    duration = 10.0 if config.duration is None else float(config.duration)
    return build_model(config.model, esize=config.esize, video_fps=config.video_fps,
                       duration_s=duration, **backbone, **fusion)
