"""Local diarization error on chunks, kept as sums (frames) so ranks can add them up.

After the optimal speaker permutation and a 0.5 threshold, for every frame with reference
speakers r and hypothesis speakers h: false alarm max(0, h - r), missed detection
max(0, r - h), confusion min(r, h) - correctly matched speakers. DER = (false alarm +
missed + confusion) / reference speech, all counted in speaker-frames.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch

from core.powerset import Powerset
from train.loss import best_permutation, fit_speakers, permute_speakers

DER_KEYS = ("false_alarm", "missed", "confusion", "speech")


def hard_activity(scores: torch.Tensor, powerset: Optional[Powerset],
                  threshold: float = 0.5) -> torch.Tensor:
    """scores (batch, frame, class) -> 0/1 activity (batch, frame, speaker), float32."""
    if powerset is not None:
        return powerset.to_multilabel(scores.float())
    return (scores.float() > threshold).float()


def der_sums(scores: torch.Tensor, target: torch.Tensor, powerset: Optional[Powerset],
             threshold: float = 0.5) -> Dict[str, float]:
    """Error counts in speaker-frames for one batch: false_alarm, missed, confusion, speech."""
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


class Sums:
    """Named running sums (Python floats), added batch by batch, reduced once at the end."""

    def __init__(self) -> None:
        self.values: Dict[str, float] = {}

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self.values[key] = self.values.get(key, 0.0) + float(value)
