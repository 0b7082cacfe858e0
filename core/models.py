"""The model registry: every architecture's id, name and class, build_model, and the
questions the rest of the code asks a model.

    0 "audio"  PyanNet       (core/backbone.py)   no video
    6 "late"   LateFusion    (core/fusion.py)     video after the LSTM
    7 "early"  EarlyFusion                        video before the LSTM
    8 "hybrid" HybridFusion                       video before and after the LSTM

Each class states its own `model_id`, `model_name` and `is_fusion` (whether it takes
video); a fusion model also its `fusion_stage` and, once built, its `esize`. The tables
here are derived from the classes. `model_name` parses `--model` (an id or a name) for
every subcommand; `takes_video` and `video_size` ask a built model (or a checkpoint's) what
video it takes; `add_esize_argument` defines the `--esize` flag once for every parser.

build_model(**model.hparams) rebuilds the same architecture (weights are not included).
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, Optional, Tuple, Union

from torch import nn

from core.backbone import PyanNet
from core.fusion import EarlyFusion, HybridFusion, LateFusion
from core.parts import PARTS, freeze, param_groups, parameter_counts, parts, summary

MODEL_CLASSES: Tuple[type, ...] = (PyanNet, LateFusion, EarlyFusion, HybridFusion)
MODEL_IDS: Dict[str, int] = {cls.model_name: cls.model_id for cls in MODEL_CLASSES}
MODEL_NAMES: Dict[int, str] = {cls.model_id: cls.model_name for cls in MODEL_CLASSES}
_CLASS_OF: Dict[str, type] = {cls.model_name: cls for cls in MODEL_CLASSES}
# how --model is written: "0/audio, 6/late, 7/early, 8/hybrid"
MODEL_CHOICES = ", ".join(f"{cls.model_id}/{cls.model_name}" for cls in MODEL_CLASSES)
AUDIO_ONLY_STAGE = "none (audio only)"

FUSION_HPARAMS = ("esize", "video_fps", "d_model", "num_layers", "num_heads", "dropout",
                  "locality_tau_s", "modality_dropout", "ff_mult", "video_hidden",
                  "video_centering", "learned_locality", "residual_before_activation")

__all__ = ["MODEL_CHOICES", "MODEL_CLASSES", "MODEL_IDS", "MODEL_NAMES", "PARTS",
           "add_esize_argument", "build_model", "checkpoint_hparams", "freeze",
           "fusion_stage", "model_class", "model_name", "param_groups", "parameter_counts",
           "parts", "summary", "takes_video", "video_size"]


def model_name(model: Union[str, int]) -> str:
    """Canonical name of a model given as id (0, 6, 7, 8, also "6") or name ("late",
    "LATE"); raises ValueError naming the choices."""
    key = model.strip().lower() if isinstance(model, str) else model
    if isinstance(key, str) and key.isdigit():
        key = int(key)
    if isinstance(key, int) and not isinstance(key, bool) and key in MODEL_NAMES:
        return MODEL_NAMES[key]
    if isinstance(key, str) and key in MODEL_IDS:
        return key
    raise ValueError(f"core/models.py: unknown model {model!r}; choose {MODEL_CHOICES}")


def model_class(model: Union[str, int]) -> type:
    """The class of a model given as id or name (see model_name)."""
    return _CLASS_OF[model_name(model)]


def fusion_stage(model: Union[str, int]) -> str:
    """Where video enters a model given as id or name, e.g. "late (after LSTM)"."""
    cls = model_class(model)
    return cls.fusion_stage if cls.is_fusion else AUDIO_ONLY_STAGE


def takes_video(model: nn.Module) -> bool:
    """Whether a built model takes video (B, Tv, E) beside the waveform: its class says so
    (`is_fusion`). Any module that does not say is taken as audio-only."""
    return bool(getattr(model, "is_fusion", False))


def video_size(model: nn.Module) -> Optional[int]:
    """E, the width of the video embeddings a built model takes (its `esize`, from its
    checkpoint when it was loaded); None for an audio-only model."""
    return int(model.esize) if takes_video(model) else None


def add_esize_argument(parser: Union[argparse.ArgumentParser, Any], *,
                       default: Optional[int] = None,
                       help: str = "video embedding size (fusion)") -> None:
    """Add `--esize E` (int, dest "esize") to an argparse parser or argument group."""
    parser.add_argument("--esize", type=int, default=default, help=help)


def checkpoint_hparams(hparams: Dict[str, Any]) -> Dict[str, Any]:
    """A checkpoint's model_hparams as build_model arguments: fusion checkpoints written
    before video_centering or learned_locality existed had neither, so they get False; so
    do model 7 checkpoints from before residual_before_activation."""
    hparams = dict(hparams)
    name = model_name(hparams.get("model", "audio"))
    if name != "audio":
        hparams.setdefault("video_centering", False)
        hparams.setdefault("learned_locality", False)
    if name == "early":
        hparams.setdefault("residual_before_activation", False)
    return hparams


def build_model(model: Union[str, int] = "audio", *, esize: Optional[int] = None,
                video_fps: float = 25.0, **hparams: Any) -> nn.Module:
    """A freshly initialised model.

    Backbone hparams (all models): sincnet, lstm, linear (dicts), num_speakers,
    powerset_max, duration_s. Fusion hparams (6, 7, 8): esize (required), video_fps,
    d_model, num_layers, num_heads, dropout, locality_tau_s, modality_dropout, ff_mult,
    video_centering (subtract each chunk's mean video embedding, default True),
    learned_locality (a learned time-distance bias per attention head, default True
    unless locality_tau_s is set);
    video_hidden (8 only); residual_before_activation (7 only, default True: the
    co-attention residual goes in before SincNet's last LeakyReLU). Fusion hparams that do
    not apply to the chosen model (all of them for the audio model, video_hidden for 6 and
    7, residual_before_activation for 6 and 8) and fusion hparams set to None are
    ignored, so one config can build every model; unknown names are an error.
    """
    name = model_name(model)
    hparams = {k: v for k, v in hparams.items() if not (k in FUSION_HPARAMS and v is None)}
    if name != "hybrid":
        hparams.pop("video_hidden", None)
    if name != "early":
        hparams.pop("residual_before_activation", None)
    try:
        if name == "audio":
            return PyanNet(**{k: v for k, v in hparams.items() if k not in FUSION_HPARAMS})
        return _CLASS_OF[name](esize=esize, video_fps=video_fps, **hparams)
    except TypeError as error:
        raise ValueError(f"core/models.py: bad settings for model {name!r}: {error}") from None
