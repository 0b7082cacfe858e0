"""Local diarization error on chunks, kept as sums (speaker-frames) so that batches, files
and ranks can add them up; training's validation and eval's chunk-level DER both count it.

After the optimal speaker permutation (core/permutation.py) and a 0.5 threshold, for every
frame with reference speakers r and hypothesis speakers h: false alarm max(0, h - r),
missed detection max(0, r - h), confusion min(r, h) - correctly matched speakers.
DER = (false alarm + missed + confusion) / reference speech, all in speaker-frames.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch

from core.permutation import best_permutation, fit_speakers, permute_speakers
from core.powerset import Powerset

DER_KEYS = ("false_alarm", "missed", "confusion", "speech")


def hard_activity(scores: torch.Tensor, powerset: Optional[Powerset],
                  threshold: float = 0.5) -> torch.Tensor:
    """scores (batch, frame, class) -> 0/1 activity (batch, frame, speaker), float32."""
    if powerset is not None:
        return powerset.to_multilabel(scores.float())
    return (scores.float() > threshold).float()


def der_sums(scores: torch.Tensor, target: torch.Tensor, powerset: Optional[Powerset],
             threshold: float = 0.5) -> Dict[str, float]:
    """Error counts in speaker-frames for one batch: false_alarm, missed, confusion, speech.

    scores (batch, frame, class): powerset log-probabilities (when `powerset` is given) or
    per-speaker probabilities; target (batch, frame, speaker) 0/1."""
    hypothesis = hard_activity(scores, powerset, threshold)
    reference = fit_speakers((target.float() > 0.5).float(), hypothesis.shape[-1])
    reference = permute_speakers(reference, best_permutation(reference, hypothesis))
    ref_count, hyp_count = reference.sum(-1), hypothesis.sum(-1)
    correct = (reference * hypothesis).sum(-1)
    sums = torch.stack([
        (hyp_count - ref_count).clamp(min=0).sum(),
        (ref_count - hyp_count).clamp(min=0).sum(),
        (torch.minimum(ref_count, hyp_count) - correct).sum(),
        ref_count.sum(),
    ]).double().cpu().tolist()
    return dict(zip(DER_KEYS, sums))


def der_from_sums(sums: Dict[str, float]) -> Dict[str, float]:
    """Rates over reference speech: der, false_alarm, missed, confusion (0 speech -> 0)."""
    speech = sums.get("speech", 0.0)
    rates = {k: (sums.get(k, 0.0) / speech if speech > 0 else 0.0)
             for k in ("false_alarm", "missed", "confusion")}
    rates["der"] = rates["false_alarm"] + rates["missed"] + rates["confusion"]
    return rates
