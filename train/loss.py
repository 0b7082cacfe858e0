"""Permutation-invariant segmentation loss, as pyannote's SpeakerDiarization task.

Speakers in a chunk have no fixed order, so the target is permuted to best match the
prediction before the loss: powerset models compare the prediction's hard multi-label
activity with the target (squared error per speaker pair), permute the target, encode it as
powerset class ids and take NLL on the log-probabilities; multi-label models compare the
probabilities with the target and take binary cross-entropy. Always in float32.

Shapes: scores (batch, frame, class), target (batch, frame, speaker) 0/1.
"""

from __future__ import annotations

import itertools
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from core.powerset import Powerset

# Up to this many speakers every permutation is scored at once on the device (4! = 24);
# beyond, the Hungarian algorithm runs per chunk on the CPU.
BRUTE_FORCE_MAX_SPEAKERS = 4


def fit_speakers(target: torch.Tensor, num_speakers: int) -> torch.Tensor:
    """Pad (with silent speakers) the speaker axis of target (batch, frame, k) to num_speakers."""
    k = target.shape[-1]
    if k == num_speakers:
        return target
    if k > num_speakers:
        raise ValueError(
            f"the target has {k} speakers per chunk but the model predicts {num_speakers}; "
            "limit speakers per chunk in the data loader to the model's number")
    return F.pad(target, (0, num_speakers - k))


def best_permutation(reference: torch.Tensor, hypothesis: torch.Tensor) -> torch.Tensor:
    """Speaker permutation of `reference` that best matches `hypothesis`.

    reference, hypothesis: (batch, frame, speaker). Returns (batch, speaker) long `perm`
    minimising sum over frames and speakers of (hypothesis[..., i] - reference[..., perm[i]])^2,
    so that reference.gather(-1, perm) is aligned with hypothesis.
    """
    reference, hypothesis = reference.float(), hypothesis.float()
    batch, _, k = reference.shape
    # cost[b, i, j]: squared error between hypothesis speaker i and reference speaker j.
    cost = ((hypothesis.unsqueeze(-1) - reference.unsqueeze(-2)) ** 2).sum(dim=1)
    if k <= BRUTE_FORCE_MAX_SPEAKERS:
        perms = torch.tensor(list(itertools.permutations(range(k))), device=cost.device)
        # totals[b, p] = sum_i cost[b, i, perms[p, i]]
        totals = cost[:, torch.arange(k, device=cost.device), perms].sum(dim=-1)
        return perms[totals.argmin(dim=-1)]
    rows = []
    for matrix in cost.detach().cpu().numpy():
        _, cols = linear_sum_assignment(matrix)
        rows.append(torch.as_tensor(cols))
    return torch.stack(rows).to(reference.device)


def permute_speakers(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """x (batch, frame, speaker), perm (batch, speaker) -> x[b, :, perm[b]]."""
    return x.gather(-1, perm.unsqueeze(1).expand(-1, x.shape[1], -1))


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
