"""Full diarization of one file from its window outputs (pyannote speaker-diarization-3.1
recipe): hard local speakers -> speaker count -> embeddings + clustering (or the oracle)
-> reconstruction -> Annotation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from pyannote.core import Annotation, Segment

from eval.clustering import (
    MIN_CLUSTER_SIZE,
    THRESHOLD,
    cluster_windows,
    oracle_clusters,
    window_references,
)
from eval.counting import speaker_count
from eval.inference import WindowOutput
from eval.reconstruct import binary_to_annotation, reconstruct


@dataclass
class ClusteringOptions:
    """How local speakers become global ones (see eval/clustering.py)."""

    threshold: float = THRESHOLD
    min_cluster_size: int = MIN_CLUSTER_SIZE
    num_speakers: Optional[int] = None
    min_speakers: Optional[int] = None
    max_speakers: Optional[int] = None
    warm_up: float = 0.0            # fraction of each window trimmed before counting
    min_duration_off: float = 0.0


def diarize(windows: WindowOutput, *, uri: Optional[str] = None,
            embeddings: Optional[np.ndarray] = None, reference: Optional[Annotation] = None,
            options: Optional[ClusteringOptions] = None) -> Annotation:
    """Diarization of one file. With `embeddings` (windows, K, D): full pipeline; with
    `reference` instead: oracle clustering (local speakers matched to reference speakers)."""
    options = options or ClusteringOptions()
    if embeddings is None and reference is None:
        raise ValueError("diarize needs speaker embeddings (full) or a reference (oracle)")
    first = windows.first_frames
    num_frames = windows.num_frames
    count = speaker_count(windows.activations, first, warm_up=options.warm_up,
                          num_frames=num_frames)
    if options.max_speakers is not None or options.num_speakers is not None:
        count = np.minimum(count, options.num_speakers or options.max_speakers)
    extent = Segment(0.0, windows.duration_s)
    labels = None
    if embeddings is not None:
        hard = cluster_windows(
            embeddings, windows.activations, threshold=options.threshold,
            min_cluster_size=options.min_cluster_size, num_speakers=options.num_speakers,
            min_speakers=options.min_speakers, max_speakers=options.max_speakers)
    else:
        labels = sorted(reference.labels())
        references = window_references(reference, labels, windows.chunk_starts_s,
                                       windows.window_s, windows.activations.shape[1],
                                       windows.center0_s, windows.frame_step_s)
        # as pyannote's OracleClustering: a window that runs past the file's end (the
        # zero-padded last one) is not matched and adds nothing to the reconstruction
        whole = windows.chunk_starts_s + windows.window_s <= windows.duration_s + 1e-9
        hard = oracle_clusters(windows.activations, references, whole)
    if count.max(initial=0) == 0 or hard.max(initial=-1) < 0:
        return Annotation(uri=uri)
    binary = reconstruct(windows.ranking_scores, hard, count, first)
    if labels is not None and binary.shape[1] > len(labels):
        labels = labels + [f"EXTRA_{k:02d}" for k in range(binary.shape[1] - len(labels))]
    return binary_to_annotation(binary, windows.center0_s, windows.frame_step_s, labels=labels,
                                uri=uri, min_duration_off=options.min_duration_off,
                                extent=extent)
