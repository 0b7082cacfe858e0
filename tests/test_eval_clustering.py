"""Agglomerative clustering of local-speaker embeddings, speaker-count bounds, counting."""

import numpy as np
import pytest

from eval.clustering import agglomerative, cluster_bounds, cluster_windows
from eval.counting import speaker_count


def _blobs(sizes, dim=16, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[: len(sizes)] * 3.0
    points = [c + spread * rng.standard_normal((n, dim)) for c, n in zip(centres, sizes)]
    labels = np.concatenate([np.full(n, k) for k, n in enumerate(sizes)])
    return np.concatenate(points), labels


def _same_partition(a, b):
    return len(set(zip(a.tolist(), b.tolist()))) == len(set(a.tolist())) == len(set(b.tolist()))


def test_separable_speakers_are_found():
    embeddings, truth = _blobs([30, 25, 20])
    labels = agglomerative(embeddings)
    assert _same_partition(labels, truth)


def test_small_clusters_join_the_nearest_large_one():
    embeddings, truth = _blobs([30, 25, 3])
    embeddings[55:] = embeddings[0] + 0.5 * (embeddings[55:] - embeddings[55:].mean(0))
    embeddings[55:] += np.eye(16)[5] * 0.6  # a small cluster close to speaker 0
    labels = agglomerative(embeddings, min_cluster_size=12)
    assert len(set(labels)) == 2
    assert set(labels[55:]) == {labels[0]}


def test_num_speakers_is_honoured():
    embeddings, _ = _blobs([30, 25, 20])
    assert len(set(agglomerative(embeddings, num_clusters=2))) == 2
    forced, low, high = cluster_bounds(75, None, 4, None)
    assert (forced, low, high) == (None, 4, 75)
    assert len(set(agglomerative(embeddings, min_cluster_size=1, min_clusters=4,
                                 max_clusters=75))) == 4
    with pytest.raises(ValueError, match="min-speakers"):
        cluster_bounds(10, None, 5, 3)


def test_cluster_windows_assigns_active_local_speakers_only():
    rng = np.random.default_rng(1)
    centres = np.eye(8)[:2] * 2
    num_windows = 40
    embeddings = np.full((num_windows, 3, 8), np.nan)
    activations = np.zeros((num_windows, 50, 3))
    truth = np.full((num_windows, 3), -2)
    for w in range(num_windows):
        for k, speaker in enumerate(rng.permutation(2)):
            embeddings[w, k] = centres[speaker] + 0.05 * rng.standard_normal(8)
            activations[w, 10 * k:10 * k + 20, k] = 1
            truth[w, k] = speaker
    hard = cluster_windows(embeddings, activations)
    assert np.all(hard[:, 2] == -2)
    assert _same_partition(hard[:, :2].ravel(), truth[:, :2].ravel())
    one = cluster_windows(embeddings, activations, max_speakers=1)
    assert set(one[:, :2].ravel()) == {0}


def test_speaker_count_rounds_the_trimmed_average():
    activations = np.zeros((3, 10, 2))
    activations[:, :, 0] = 1
    activations[0, :, 1] = 1  # only the first window sees a second speaker
    count = speaker_count(activations, np.array([0, 1, 2]), warm_up=0.0)
    assert count[0] == 2 and count[5] == 1 and len(count) == 12
    # 2 frames trimmed per edge: frame 4 averages windows 0, 1, 2 (2, 1, 1 -> 1); frame 0
    # is only in window 0's trimmed edge and falls back to the untrimmed average (2).
    trimmed = speaker_count(activations, np.array([0, 1, 2]), warm_up=0.2)
    assert trimmed[0] == 2 and trimmed[4] == 1 and trimmed[11] == 1
    assert speaker_count(activations, np.array([0, 1, 2]), warm_up=0.0)[4] == 1
