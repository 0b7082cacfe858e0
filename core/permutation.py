"""Speaker permutations: local speakers of a chunk have no fixed order, so a reference is
permuted to best match a hypothesis before it is compared (training's loss, local DER).

Shapes: (batch, frame, speaker) activities; permutations (batch, speaker) long.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

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
