"""Global speakers for local ones: agglomerative clustering of embeddings, or the oracle.

Shapes: embeddings (windows, K, D) with NaN rows where none could be computed;
activations (windows, F, K) hard 0/1; hard_clusters (windows, K) int, -2 = inactive.
The agglomerative recipe follows pyannote's speaker-diarization-3.1: centroid linkage on
L2-normalised embeddings cut at `threshold`, clusters smaller than `min_cluster_size`
joined to the nearest large one, every local speaker then assigned to the closest centroid.
"""

from __future__ import annotations

import warnings
from typing import Optional, Tuple

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from eval.reconstruct import INACTIVE

THRESHOLD = 0.7045654963945799
MIN_CLUSTER_SIZE = 12


def cluster_bounds(num_embeddings: int, num_clusters: Optional[int] = None,
                   min_clusters: Optional[int] = None,
                   max_clusters: Optional[int] = None) -> Tuple[Optional[int], int, int]:
    """(num_clusters, min_clusters, max_clusters) clipped to [1, num_embeddings]."""
    low = max(1, min(num_embeddings, num_clusters or min_clusters or 1))
    high = max(1, min(num_embeddings, num_clusters or max_clusters or num_embeddings))
    if low > high:
        raise ValueError(f"--min-speakers ({low}) must not exceed --max-speakers ({high})")
    if low == high:
        num_clusters = low
    return num_clusters, low, high


def _large_clusters(labels: np.ndarray, min_size: int) -> Tuple[np.ndarray, np.ndarray]:
    unique, counts = np.unique(labels, return_counts=True)
    return unique[counts >= min_size], unique[counts < min_size]


def agglomerative(embeddings: np.ndarray, *, threshold: float = THRESHOLD,
                  min_cluster_size: int = MIN_CLUSTER_SIZE, num_clusters: Optional[int] = None,
                  min_clusters: int = 1, max_clusters: Optional[int] = None) -> np.ndarray:
    """(n, D) embeddings -> (n,) cluster labels 0..k-1."""
    num_embeddings = len(embeddings)
    if num_embeddings <= 1:
        return np.zeros(num_embeddings, dtype=np.int64)
    max_clusters = max_clusters or num_embeddings
    min_size = min(min_cluster_size, max(1, round(0.1 * num_embeddings)))
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = embeddings / np.linalg.norm(embeddings, axis=-1, keepdims=True)
    dendrogram = linkage(unit, method="centroid", metric="euclidean")
    labels = fcluster(dendrogram, threshold, criterion="distance") - 1
    large, _ = _large_clusters(labels, min_size)
    if len(large) < min_clusters:
        num_clusters = min_clusters
    elif len(large) > max_clusters:
        num_clusters = max_clusters
    if num_clusters is not None and len(large) != num_clusters:
        labels = _closest_cut(dendrogram, threshold, min_size, num_clusters)
        large, _ = _large_clusters(labels, min_size)
        if len(large) != num_clusters:
            warnings.warn(f"clustering found {len(large)} speakers where {num_clusters} were "
                          "asked for", stacklevel=2)
    if len(large) == 0:
        return np.zeros(num_embeddings, dtype=np.int64)
    large, small = _large_clusters(labels, min_size)
    if len(small):
        centroids = np.vstack([unit[labels == k].mean(axis=0) for k in large])
        for k in small:
            distance = cdist(unit[labels == k].mean(axis=0, keepdims=True), centroids, "cosine")
            labels[labels == k] = large[int(np.argmin(distance))]
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


def _closest_cut(dendrogram: np.ndarray, threshold: float, min_size: int,
                 target: int) -> np.ndarray:
    """Labels at the merge step, nearest to `threshold`, giving `target` large clusters."""
    steps = np.copy(dendrogram)
    steps[:, 2] = np.arange(len(dendrogram))
    best_step, best_count = len(dendrogram), 1
    for step in np.argsort(np.abs(dendrogram[:, 2] - threshold)):
        if steps[step, 3] < min_size:
            continue
        labels = fcluster(steps, step, criterion="distance") - 1
        count = len(_large_clusters(labels, min_size)[0])
        if abs(count - target) < abs(best_count - target):
            best_step, best_count = step, count
        if count == target:
            return labels
    return fcluster(steps, best_step, criterion="distance") - 1


def cluster_windows(embeddings: np.ndarray, activations: np.ndarray, *,
                    threshold: float = THRESHOLD, min_cluster_size: int = MIN_CLUSTER_SIZE,
                    num_speakers: Optional[int] = None, min_speakers: Optional[int] = None,
                    max_speakers: Optional[int] = None,
                    constrained: bool = False) -> np.ndarray:
    """hard_clusters (windows, K): a global speaker for every active local speaker.

    Embeddings of active local speakers are clustered; then every active local speaker goes
    to the nearest centroid (cosine), or with `constrained` to a distinct one per window.
    """
    active = np.nansum(activations, axis=1) > 0  # (windows, K)
    valid = active & ~np.any(np.isnan(embeddings), axis=2)
    hard = np.full(active.shape, INACTIVE, dtype=np.int64)
    windows, speakers = np.nonzero(valid)
    if len(windows) == 0:
        hard[active] = 0
        return hard
    train = embeddings[windows, speakers]
    num_clusters, low, high = cluster_bounds(len(train), num_speakers, min_speakers,
                                             max_speakers)
    if high < 2:
        hard[active] = 0
        return hard
    labels = agglomerative(train, threshold=threshold, min_cluster_size=min_cluster_size,
                           num_clusters=num_clusters, min_clusters=low, max_clusters=high)
    centroids = np.vstack([train[labels == k].mean(axis=0) for k in range(labels.max() + 1)])
    flat = np.nan_to_num(embeddings.reshape(-1, embeddings.shape[-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        similarity = 2.0 - cdist(flat, centroids, metric="cosine")
    similarity = np.nan_to_num(similarity, nan=-np.inf).reshape(*active.shape, -1)
    for window in range(len(hard)):
        if constrained:
            rows, cols = linear_sum_assignment(np.nan_to_num(similarity[window], neginf=-1e6),
                                               maximize=True)
            choice = np.full(active.shape[1], -1)
            choice[rows] = cols
            left = choice < 0
            choice[left] = np.argmax(similarity[window][left], axis=1)
        else:
            choice = np.argmax(similarity[window], axis=1)
        hard[window] = np.where(active[window], choice, INACTIVE)
    return hard


def oracle_clusters(activations: np.ndarray, references: np.ndarray,
                    matched: Optional[np.ndarray] = None) -> np.ndarray:
    """hard_clusters (windows, K) matching local speakers to reference speakers.

    references: (windows, F, R) 0/1 reference speakers on each window's frames
    (`window_references`). In each window local speakers are matched one-to-one to
    reference speakers minimising the mean squared difference of their activities
    (Hungarian); with fewer reference speakers than local ones the unmatched local speakers
    are dropped, and so are local speakers never active. matched: (windows,) bool, the
    windows to match (default all); the others keep no local speaker (-2).
    """
    num_windows, num_frames, num_local = activations.shape
    hard = np.full((num_windows, num_local), INACTIVE, dtype=np.int64)
    if references.shape[-1] == 0:
        return hard
    for window in range(num_windows):
        if matched is not None and not matched[window]:
            continue
        ref = references[window, :num_frames]  # (F, R)
        local = np.nan_to_num(activations[window, :len(ref)])
        for r, k in _match(ref, local):
            if local[:, k].sum() > 0:
                hard[window, k] = r
    return hard


def _match(reference: np.ndarray, local: np.ndarray):
    """(reference speaker, local speaker) pairs of least mean squared difference, from
    (F, R) and (F, K) activities. Posed as pyannote's `permutate` poses it, so that equal
    costs resolve the same way: float32 costs (whose rounding decides between assignments
    of equal exact cost), reference speakers as rows, padded with dearer dummy rows when
    K > R."""
    difference = (reference.astype(np.float32)[:, :, None]
                  - local.astype(np.float32)[:, None, :])
    cost = np.square(difference).mean(axis=0, dtype=np.float32)  # (R, K)
    num_reference, num_local = cost.shape
    if num_local > num_reference:
        cost = np.pad(cost, ((0, num_local - num_reference), (0, 0)),
                      constant_values=cost.max() + np.float32(1))
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(k)) for r, k in zip(rows, cols) if r < num_reference]


def window_references(annotation, labels, chunk_starts_s: np.ndarray, window_s: float,
                      num_frames: int, center0_s: float, step_s: float) -> np.ndarray:
    """(windows, F, len(labels)) 0/1 reference speakers on every window's own frames.

    As pyannote's oracle segmentation: a turn, cut to the window, marks the frames from
    the one whose centre (`start + center0_s + i * step_s`) is closest to its start to the
    one closest to its end, both included.
    """
    out = np.zeros((len(chunk_starts_s), num_frames, len(labels)), dtype=np.float64)
    index = {label: r for r, label in enumerate(labels)}
    turns = [(segment.start, segment.end, index[label])
             for segment, _, label in annotation.itertracks(yield_label=True)
             if label in index]
    for window, start in enumerate(np.asarray(chunk_starts_s, dtype=np.float64)):
        end = start + window_s
        for turn_start, turn_end, r in turns:
            if turn_end <= start or turn_start >= end:
                continue
            first = int(np.rint((max(turn_start, start) - start - center0_s) / step_s))
            last = int(np.rint((min(turn_end, end) - start - center0_s) / step_s))
            out[window, max(first, 0):max(min(last + 1, num_frames), 0), r] = 1.0
    return out


def discretize(annotation, labels, num_frames: int, center0_s: float,
               step_s: float) -> np.ndarray:
    """(frames, len(labels)) 0/1: frame i is active for a speaker whose turn contains its
    centre `center0_s + i * step_s`."""
    out = np.zeros((num_frames, len(labels)), dtype=np.float64)
    index = {label: r for r, label in enumerate(labels)}
    for segment, _, label in annotation.itertracks(yield_label=True):
        if label not in index:
            continue
        first = int(np.ceil((segment.start - center0_s) / step_s - 1e-9))
        last = int(np.ceil((segment.end - center0_s) / step_s - 1e-9))  # exclusive
        out[max(first, 0):max(min(last, num_frames), 0), index[label]] = 1.0
    return out
