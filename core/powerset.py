"""Powerset encoding of overlapping speakers (pyannote's segmentation-3.0 output space).

With 3 speakers and at most 2 at once there are C = 7 classes, in the order
`{}, {0}, {1}, {2}, {0,1}, {0,2}, {1,2}`: sets by size, then lexicographically.
Shapes: (batch, frame, class) for powerset scores, (batch, frame, speaker) for multi-label.
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F


class Powerset:
    """Conversion between powerset classes and per-speaker (multi-label) activity."""

    def __init__(self, num_speakers: int = 3, max_set_size: int = 2):
        if num_speakers < 1 or not 1 <= max_set_size <= num_speakers:
            raise ValueError(
                f"powerset needs 1 <= max_set_size <= num_speakers, got "
                f"num_speakers={num_speakers}, max_set_size={max_set_size}")
        self.num_speakers = num_speakers
        self.max_set_size = max_set_size
        self.sets: Tuple[Tuple[int, ...], ...] = tuple(
            subset for size in range(max_set_size + 1)
            for subset in combinations(range(num_speakers), size))
        self.num_classes = len(self.sets)
        mapping = torch.zeros(self.num_classes, num_speakers)
        for index, subset in enumerate(self.sets):
            mapping[index, list(subset)] = 1.0
        self.mapping = mapping  # (class, speaker)
        self._index = {subset: index for index, subset in enumerate(self.sets)}

    def to_multilabel(self, scores: torch.Tensor, soft: bool = False) -> torch.Tensor:
        """(batch, frame, class) log-probabilities -> (batch, frame, speaker) in [0, 1].

        hard: the speakers of the most likely class; soft: each speaker's marginal probability.
        """
        mapping = self.mapping.to(device=scores.device, dtype=torch.float32)
        if soft:
            return torch.exp(scores.float()) @ mapping
        return mapping[scores.argmax(dim=-1)]  # the rows of the most likely classes

    def class_ids(self, multilabel: torch.Tensor) -> torch.Tensor:
        """(batch, frame, speaker) 0/1 activity -> (batch, frame) powerset class index.

        The class that shares most speakers with the frame, the smallest such set on ties:
        exact for encodable frames; a frame with more than `max_set_size` active speakers
        gets the first set of `max_set_size` of them (as pyannote does).
        """
        overlap = multilabel.float() @ self.mapping.to(multilabel.device).T
        return overlap.argmax(dim=-1)

    def to_powerset(self, multilabel: torch.Tensor) -> torch.Tensor:
        """(batch, frame, speaker) 0/1 activity -> (batch, frame, class) one-hot float."""
        return F.one_hot(self.class_ids(multilabel), self.num_classes).float()

    def permutation_mapping(self, permutation: Sequence[int]) -> torch.Tensor:
        """Class permutation induced by a speaker permutation, shape (class,).

        With speakers permuted so that new speaker i is old speaker `permutation[i]`
        (multilabel[..., permutation]), powerset scores permute the same way with
        scores[..., mapping]: new class c gathers old class mapping[c].
        """
        if sorted(permutation) != list(range(self.num_speakers)):
            raise ValueError(f"not a permutation of {self.num_speakers} speakers: {permutation}")
        mapping = []
        for subset in self.sets:
            old = tuple(sorted(permutation[s] for s in subset))
            mapping.append(self._index[old])
        return torch.tensor(mapping, dtype=torch.long)
