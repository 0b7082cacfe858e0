"""Permutation-invariant segmentation loss, as pyannote's SpeakerDiarization task.

Speakers in a chunk have no fixed order, so the target is permuted to best match the
prediction before the loss (core/permutation.py): powerset models compare the prediction's
hard multi-label activity with the target (squared error per speaker pair), permute the
target, encode it as powerset class ids and take NLL on the log-probabilities; multi-label
models compare the probabilities with the target and take binary cross-entropy. Always in
float32.

Shapes: scores (batch, frame, class), target (batch, frame, speaker) 0/1.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from core.permutation import best_permutation, fit_speakers, permute_speakers
from core.powerset import Powerset


def powerset_loss(log_probs: torch.Tensor, target: torch.Tensor,
                  powerset: Powerset) -> Tuple[torch.Tensor, torch.Tensor]:
    """NLL of the best-permuted target's powerset classes, mean over frames (float32).

    Frames whose target has more active speakers than the powerset encodes are left out.
    Returns (loss scalar, permuted target (batch, frame, speaker)).
    """
    log_probs = log_probs.float()
    target = fit_speakers(target.float(), powerset.num_speakers)
    with torch.no_grad():
        hard = powerset.to_multilabel(log_probs)
        permuted = permute_speakers(target, best_permutation(target, hard))
        too_many = permuted.sum(dim=-1) > powerset.max_set_size
        ids = powerset.class_ids(permuted.masked_fill(too_many.unsqueeze(-1), 0.0))
        ids = ids.masked_fill(too_many, -100)
    loss = F.nll_loss(log_probs.reshape(-1, log_probs.shape[-1]), ids.reshape(-1),
                      ignore_index=-100)
    return loss, permuted


def multilabel_loss(probs: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Binary cross-entropy with the best-permuted target, mean over frames and speakers."""
    probs = probs.float()
    target = fit_speakers(target.float(), probs.shape[-1])
    with torch.no_grad():
        permuted = permute_speakers(target, best_permutation(target, probs))
    return F.binary_cross_entropy(probs, permuted), permuted


def segmentation_loss(scores: torch.Tensor, target: torch.Tensor,
                      powerset: Optional[Powerset]) -> torch.Tensor:
    """Permutation-invariant loss for either output type (powerset when `powerset` is set).

    Runs outside autocast, in float32, whatever dtype `scores` has.
    """
    if scores.shape[:2] != target.shape[:2]:
        raise ValueError(
            f"scores {tuple(scores.shape)} and target {tuple(target.shape)} disagree on "
            "(batch, frame): the data loader's frame count must be the model's num_frames")
    with torch.autocast(scores.device.type, enabled=False):
        if powerset is not None:
            return powerset_loss(scores, target, powerset)[0]
        return multilabel_loss(scores, target)[0]
