"""Model ids and names, and build_model: one entry point for every architecture.

    0 "audio"  PyanNet (core/backbone.py)
    6 "late"   LateFusion   (core/fusion.py)
    7 "early"  EarlyFusion
    8 "hybrid" HybridFusion

build_model(**model.hparams) rebuilds the same architecture (weights are not included).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

from torch import nn

from core.backbone import PyanNet
from core.fusion import EarlyFusion, HybridFusion, LateFusion
from core.parts import PARTS, freeze, param_groups, parameter_counts, parts, summary

MODEL_IDS: Dict[str, int] = {"audio": 0, "late": 6, "early": 7, "hybrid": 8}
MODEL_NAMES: Dict[int, str] = {i: name for name, i in MODEL_IDS.items()}
MODEL_CLASSES: Dict[str, type] = {
    "audio": PyanNet, "late": LateFusion, "early": EarlyFusion, "hybrid": HybridFusion}

FUSION_HPARAMS = ("esize", "video_fps", "d_model", "num_layers", "num_heads", "dropout",
                  "locality_tau_s", "modality_dropout", "ff_mult", "video_hidden",
                  "video_centering", "learned_locality")

__all__ = ["MODEL_IDS", "MODEL_NAMES", "PARTS", "build_model", "checkpoint_hparams",
           "model_name", "freeze", "param_groups", "parameter_counts", "parts", "summary"]


def model_name(model: Union[str, int]) -> str:
    """Canonical name of a model given as id (0, 6, 7, 8, also "6") or name."""
    key = model.strip().lower() if isinstance(model, str) else model
    if isinstance(key, str) and key.isdigit():
        key = int(key)
    if isinstance(key, int) and not isinstance(key, bool) and key in MODEL_NAMES:
        return MODEL_NAMES[key]
    if key in MODEL_IDS:
        return key
    raise ValueError(f"core/models.py: unknown model {model!r}; choose one of "
                     f"{sorted(MODEL_IDS.values())} or {list(MODEL_IDS)}")


def checkpoint_hparams(hparams: Dict[str, Any]) -> Dict[str, Any]:
    """A checkpoint's model_hparams as build_model arguments: fusion checkpoints written
    before video_centering or learned_locality existed had neither, so they get False."""
    hparams = dict(hparams)
    if model_name(hparams.get("model", "audio")) != "audio":
        hparams.setdefault("video_centering", False)
        hparams.setdefault("learned_locality", False)
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
    video_hidden (8 only). Fusion hparams that do not apply to the chosen model (all of
    them for the audio model, video_hidden for 6 and 7) and fusion hparams set to None are
    ignored, so one config can build every model; unknown names are an error.
    """
    name = model_name(model)
    hparams = {k: v for k, v in hparams.items() if not (k in FUSION_HPARAMS and v is None)}
    if name != "hybrid":
        hparams.pop("video_hidden", None)
    try:
        if name == "audio":
            return PyanNet(**{k: v for k, v in hparams.items() if k not in FUSION_HPARAMS})
        return MODEL_CLASSES[name](esize=esize, video_fps=video_fps, **hparams)
    except TypeError as error:
        raise ValueError(f"core/models.py: bad settings for model {name!r}: {error}") from None
