"""Reconstruction and oracle clustering on window activations built from known turns."""

import numpy as np
import pytest
from pyannote.core import Annotation, Segment, Timeline

from eval.clustering import discretize, oracle_clusters, window_references
from eval.counting import aggregate, speaker_count, start_frames
from eval.inference import WindowOutput, window_starts
from eval.pipeline import ClusteringOptions, diarize
from eval.reconstruct import binary_to_annotation, reconstruct, top_count
from eval.scoring import score

STEP = 270 / 16000
CENTER0 = 495 / 16000
FRAMES = 589  # per 10 s window


def _grid(i):
    """The centre of frame i (turns between frame centres are represented exactly)."""
    return CENTER0 + i * STEP


def _reference(uri="f"):
    turns = [(100, 700, "alice"), (650, 900, "bob"), (1000, 1400, "carol"),
             (1300, 1500, "alice"), (1600, 1700, "bob")]
    annotation = Annotation(uri=uri)
    for first, last, label in turns:
        annotation[Segment(_grid(first), _grid(last))] = label
    return annotation


def _windows_from(reference, duration_s=30.0, seed=0):
    """Local activations per window: the reference cropped, local order shuffled."""
    rng = np.random.default_rng(seed)
    starts = window_starts(int(duration_s * 16000), 160000, 16000) / 16000
    first = start_frames(starts, STEP)
    labels = sorted(reference.labels())
    total = int(first.max()) + FRAMES
    ref = discretize(reference, labels, total, CENTER0, STEP)
    activations = np.zeros((len(starts), FRAMES, 3), dtype=np.float32)
    truth = np.full((len(starts), 3), -2)
    for w, f in enumerate(first):
        local = rng.permutation(3)
        for r in range(len(labels)):
            activations[w, :, local[r]] = ref[f:f + FRAMES, r]
            if ref[f:f + FRAMES, r].any():
                truth[w, local[r]] = r
    windows = WindowOutput(activations=activations, probabilities=activations,
                           chunk_starts_s=starts, window_s=10.0, center0_s=CENTER0,
                           frame_step_s=STEP, duration_s=duration_s)
    return windows, truth, labels


def _turns(annotation):
    return sorted((round(s.start, 6), round(s.end, 6), label)
                  for s, _, label in annotation.itertracks(yield_label=True))


def test_aggregate_averages_overlapping_windows():
    values = np.array([[[1.0], [1.0], [np.nan]], [[3.0], [3.0], [3.0]]])
    out = aggregate(values, np.array([0, 1]))
    np.testing.assert_allclose(out[:, 0], [1.0, 2.0, 3.0, 3.0])
    summed = aggregate(values, np.array([0, 1]), skip_average=True, num_frames=5)
    np.testing.assert_allclose(summed[:, 0], [1.0, 4.0, 3.0, 3.0, 0.0])


def test_top_count_keeps_best_speakers():
    scores = np.array([[0.1, 0.9, 0.5], [0.1, 0.9, 0.5], [0.0, 0.0, 0.0]])
    binary = top_count(scores, np.array([1, 2, 0]))
    np.testing.assert_array_equal(binary, [[0, 1, 0], [0, 1, 1], [0, 0, 0]])


def test_reconstruction_returns_constructed_turns():
    reference = _reference()
    windows, truth, labels = _windows_from(reference)
    count = speaker_count(windows.activations, windows.first_frames,
                          num_frames=windows.num_frames)
    binary = reconstruct(windows.activations, truth, count, windows.first_frames)
    hypothesis = binary_to_annotation(binary, CENTER0, STEP, labels=labels,
                                      extent=Segment(0, 30))
    assert _turns(hypothesis) == _turns(reference)


def test_turns_run_from_centre_to_centre():
    """As pyannote's Binarize: active frames [i, j) give the turn from frame i's centre to
    frame j's centre (the first inactive one), cropped to the extent."""
    binary = np.zeros((50, 2), dtype=np.int8)
    binary[10:20, 0] = 1
    binary[45:, 1] = 1
    turns = _turns(binary_to_annotation(binary, CENTER0, STEP, labels=["a", "b"],
                                        extent=Segment(0.0, CENTER0 + 49.5 * STEP)))
    assert turns == [(round(CENTER0 + 10 * STEP, 6), round(CENTER0 + 20 * STEP, 6), "a"),
                     (round(CENTER0 + 45 * STEP, 6), round(CENTER0 + 49.5 * STEP, 6), "b")]


def _two_windows(second_speaker_frames):
    """Two 10-frame windows 5 frames apart: speaker a everywhere; speaker b in window 1's
    local frames `second_speaker_frames` only."""
    activations = np.zeros((2, 10, 2), dtype=np.float32)
    activations[:, :, 0] = 1.0
    activations[1, second_speaker_frames, 1] = 1.0
    starts = np.array([0.0, 5 * STEP])
    return WindowOutput(activations, activations.copy(), starts, 10 * STEP, CENTER0, STEP,
                        CENTER0 + 14.5 * STEP)


def test_speaker_count_averages_every_window_untrimmed():
    """pyannote 4.0.7 counts speakers with no warm-up trimming: frames 5-6 are seen with
    2 speakers by window 1 (at its left edge) and 1 by window 0; the average 1.5 rounds to
    2, so speaker b is there. Trimming 20 % would have left window 0 alone (count 1)."""
    windows = _two_windows([0, 1])
    reference = Annotation(uri="f")
    reference[Segment(0.0, CENTER0 + 15 * STEP)] = "a"
    reference[Segment(CENTER0 + 5 * STEP, CENTER0 + 7 * STEP)] = "b"
    hypothesis = diarize(windows, uri="f", reference=reference)
    turns_b = [(s.start, s.end) for s in hypothesis.label_timeline("b")]
    assert turns_b == [pytest.approx((CENTER0 + 5 * STEP, CENTER0 + 7 * STEP))]
    count = speaker_count(windows.activations, windows.first_frames, warm_up=0.2,
                          num_frames=windows.num_frames)
    assert count[5] == count[6] == 1


def test_multilabel_reconstruction_ranks_by_probabilities():
    """A multi-label model: where the count allows one speaker, the one with the higher
    summed probability wins (pyannote reconstructs from the raw scores), even when both
    are active after thresholding."""
    activations = np.ones((1, 10, 2), dtype=np.float32)
    probabilities = np.full((1, 10, 2), 0.6, dtype=np.float32)
    probabilities[0, :, 1] = 0.9
    windows = WindowOutput(activations, probabilities, np.array([0.0]), 10 * STEP, CENTER0,
                           STEP, CENTER0 + 9.5 * STEP, multilabel=True)
    count = np.ones(10, dtype=np.int64)
    binary = reconstruct(windows.ranking_scores, np.array([[0, 1]]), count,
                         windows.first_frames)
    np.testing.assert_array_equal(binary[:, 1], 1)
    np.testing.assert_array_equal(binary[:, 0], 0)
    powerset = WindowOutput(activations, probabilities, np.array([0.0]), 10 * STEP, CENTER0,
                            STEP, CENTER0 + 9.5 * STEP)
    assert powerset.ranking_scores is powerset.activations


def test_min_duration_off_fills_short_gaps():
    binary = np.zeros((100, 1), dtype=np.int8)
    binary[10:20] = binary[22:40] = 1
    merged = binary_to_annotation(binary, CENTER0, STEP, min_duration_off=0.1)
    assert len(list(merged.itertracks())) == 1
    kept = binary_to_annotation(binary, CENTER0, STEP, min_duration_off=0.0)
    assert len(list(kept.itertracks())) == 2


def test_oracle_clustering_recovers_mapping_and_scores_zero():
    reference = _reference()
    windows, truth, labels = _windows_from(reference, seed=3)
    references = window_references(reference, labels, windows.chunk_starts_s, 10.0, FRAMES,
                                   CENTER0, STEP)
    hard = oracle_clusters(windows.activations, references)
    np.testing.assert_array_equal(hard, truth)
    hypothesis = diarize(windows, uri="f", reference=reference)
    uem = {"f": Timeline([Segment(0, 30)], uri="f")}
    table = score({"f": reference}, {"f": hypothesis}, uem)
    assert table.total.total_s > 10
    assert table.total.der == pytest.approx(0.0, abs=1e-9)


def test_oracle_on_wrong_activations_is_not_zero():
    reference = _reference()
    windows, _, _ = _windows_from(reference)
    windows.activations[:, :, :] = 0.0
    windows.activations[:, 100:300, 0] = 1.0
    hypothesis = diarize(windows, uri="f", reference=reference,
                         options=ClusteringOptions())
    table = score({"f": reference}, {"f": hypothesis},
                  {"f": Timeline([Segment(0, 30)], uri="f")})
    assert table.total.der > 10.0


def test_window_references_mark_closest_frames_both_ends_included():
    """pyannote's oracle segmentation: on each window's own frames, a turn marks the frame
    closest to its start through the frame closest to its end; a turn cut by the window's
    start begins at frame 0."""
    reference = Annotation(uri="f")
    t0 = 1.0
    reference[Segment(t0 + CENTER0 + 2.4 * STEP, t0 + CENTER0 + 5.6 * STEP)] = "a"
    reference[Segment(0.2, t0 + CENTER0 + 3.3 * STEP)] = "b"
    references = window_references(reference, ["a", "b"], np.array([t0]), 10 * STEP, 10,
                                   CENTER0, STEP)
    np.testing.assert_array_equal(np.flatnonzero(references[0, :, 0]), [2, 3, 4, 5, 6])
    np.testing.assert_array_equal(np.flatnonzero(references[0, :, 1]), [0, 1, 2, 3])


def test_oracle_leaves_the_padded_last_window_unmatched():
    """As pyannote's OracleClustering: a window running past the file's end is not matched;
    frames only it covers keep its speaker count, and with no scores there the first
    speakers (by label order) fill them."""
    activations = np.zeros((2, 10, 2), dtype=np.float32)
    activations[0, :, 0] = 1.0              # window 0: a
    activations[1, :5, 0] = 1.0             # window 1: a, then b alone in its last frames
    activations[1, 5:, 1] = 1.0
    duration_s = CENTER0 + 12.5 * STEP      # window 1 (frames 5-14) runs past the end
    windows = WindowOutput(activations, activations.copy(), np.array([0.0, 5 * STEP]),
                           10 * STEP, CENTER0, STEP, duration_s)
    reference = Annotation(uri="f")
    reference[Segment(0.0, CENTER0 + 10 * STEP)] = "a"
    reference[Segment(CENTER0 + 10 * STEP, duration_s)] = "b"
    references = window_references(reference, ["a", "b"], windows.chunk_starts_s,
                                   windows.window_s, 10, CENTER0, STEP)
    hard = oracle_clusters(activations, references, np.array([True, False]))
    np.testing.assert_array_equal(hard, [[0, -2], [-2, -2]])
    hypothesis = diarize(windows, uri="f", reference=reference)
    assert hypothesis.labels() == ["a"]
    assert hypothesis.get_timeline().extent().end == pytest.approx(duration_s)
