"""From clustered local speakers to a diarization: overlap-add, top-count, frames to turns.

Shapes: activations (windows, F, K) local speaker scores (hard 0/1, or a multi-label
model's probabilities); hard_clusters (windows, K) int, the global speaker of each local
one (-2 = inactive, dropped); count (frames,) int; binary (frames, speakers). Frame i of
the file is centred at `center0_s + i * step_s`.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
from pyannote.core import Annotation, Segment

from eval.counting import aggregate

INACTIVE = -2


def clustered_activations(activations: np.ndarray, hard_clusters: np.ndarray,
                          num_clusters: Optional[int] = None) -> np.ndarray:
    """(windows, F, K) local -> (windows, F, S) global speakers; NaN where a window has none.

    Local speakers of one window mapped to the same cluster are merged with a max.
    """
    hard_clusters = np.asarray(hard_clusters)
    if num_clusters is None:
        num_clusters = int(hard_clusters.max(initial=-1)) + 1
    num_windows, num_frames, _ = activations.shape
    out = np.full((num_windows, num_frames, max(num_clusters, 0)), np.nan)
    for window in range(num_windows):
        for cluster in np.unique(hard_clusters[window]):
            if cluster < 0:
                continue
            local = hard_clusters[window] == cluster
            out[window, :, cluster] = np.max(activations[window][:, local], axis=1)
    return out


def top_count(scores: np.ndarray, count: np.ndarray) -> np.ndarray:
    """(frames, S) scores, (frames,) count -> (frames, S) 0/1: the `count` best per frame."""
    num_frames = min(len(scores), len(count))
    scores, count = scores[:num_frames], np.asarray(count[:num_frames])
    width = max(scores.shape[1], int(count.max(initial=0)))
    if width > scores.shape[1]:
        scores = np.pad(scores, ((0, 0), (0, width - scores.shape[1])))
    order = np.argsort(-scores, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(width)[None].repeat(num_frames, 0), axis=1)
    return (rank < count[:, None]).astype(np.int8)


def reconstruct(activations: np.ndarray, hard_clusters: np.ndarray, count: np.ndarray,
                first_frames: np.ndarray) -> np.ndarray:
    """Binary (frames, speakers) diarization: clusters overlap-added, top-`count` kept."""
    clustered = clustered_activations(activations, hard_clusters)
    summed = aggregate(clustered, first_frames, num_frames=len(count), skip_average=True)
    return top_count(summed, count)


def merge_short_gaps(segments: List[Segment], min_duration_off: float) -> List[Segment]:
    """Join consecutive segments of one speaker separated by less than `min_duration_off` s."""
    merged: List[Segment] = []
    for segment in sorted(segments):
        if merged and segment.start - merged[-1].end < min_duration_off:
            merged[-1] = Segment(merged[-1].start, max(merged[-1].end, segment.end))
        else:
            merged.append(segment)
    return merged


def binary_to_annotation(binary: np.ndarray, center0_s: float, step_s: float, *,
                         labels: Optional[Sequence[str]] = None, uri: Optional[str] = None,
                         min_duration_off: float = 0.0,
                         extent: Optional[Segment] = None) -> Annotation:
    """(frames, S) 0/1 -> Annotation; a run of active frames [i, j) becomes the turn from
    frame i's centre to frame j's, [center0_s + i * step_s, center0_s + j * step_s] (as
    pyannote's Binarize), cropped to `extent`; same-speaker gaps shorter than
    `min_duration_off` seconds are filled.
    """
    annotation = Annotation(uri=uri)
    num_speakers = binary.shape[1] if binary.ndim == 2 else 0
    labels = list(labels) if labels is not None else [f"SPEAKER_{k:02d}"
                                                      for k in range(num_speakers)]
    for speaker in range(num_speakers):
        active = np.concatenate([[0], (binary[:, speaker] > 0).astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(active))
        segments = [Segment(center0_s + i * step_s, center0_s + j * step_s)
                    for i, j in zip(edges[::2], edges[1::2])]
        if min_duration_off > 0:
            segments = merge_short_gaps(segments, min_duration_off)
        for segment in segments:
            if extent is not None:
                segment = segment & extent
            if segment:
                annotation[segment, annotation.new_track(segment)] = labels[speaker]
    return annotation


def rename_to_reference(hypothesis: Annotation, reference: Annotation) -> Annotation:
    """Rename hypothesis speakers to their optimally matched reference speakers (for reading
    only: DER does not change); unmatched ones keep their label."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    mapping: Dict[str, str] = DiarizationErrorRate().optimal_mapping(reference, hypothesis)
    taken = set(mapping.values())
    full = {label: mapping.get(label, label if label not in taken else f"{label}*")
            for label in hypothesis.labels()}
    return hypothesis.rename_labels(mapping=full)
