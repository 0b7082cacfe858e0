"""Local (chunk-level) DER of sliding windows against a reference."""

from __future__ import annotations

import numpy as np
from pyannote.core import Annotation, Segment, Timeline

from eval.clustering import discretize
from eval.inference import WindowOutput
from eval.local import local_error_sums

STEP, CENTER0, F = 0.1, 0.05, 20          # 2 s windows of 20 frames, 1 s step


def windows_from(hyp_frames: np.ndarray, num_local: int = 3) -> WindowOutput:
    """Cut a (frames, S) 0/1 file-level activity into 2 s windows at a 1 s step."""
    starts = np.arange(0.0, 9.0, 1.0)
    acts = np.zeros((len(starts), F, num_local), dtype=np.float32)
    for w, s in enumerate(starts):
        first = int(round(s / STEP))
        acts[w, :, :hyp_frames.shape[1]] = hyp_frames[first:first + F]
    return WindowOutput(acts, acts.copy(), starts, 2.0, CENTER0, STEP, 10.0)


def reference() -> Annotation:
    ref = Annotation(uri="f")
    ref[Segment(0.0, 4.0)] = "A"
    ref[Segment(3.0, 7.0)] = "B"
    ref[Segment(8.0, 10.0)] = "C"
    return ref


def frames(annotation: Annotation, labels) -> np.ndarray:
    return discretize(annotation, labels, 100, CENTER0, STEP)


def test_perfect_and_relabelled_hypotheses_have_no_error():
    ref = reference()
    exact = local_error_sums(windows_from(frames(ref, ["A", "B", "C"])), ref)
    swapped = local_error_sums(windows_from(frames(ref, ["C", "A", "B"])), ref)
    for sums in (exact, swapped):
        assert sums["speech"] > 0
        assert sums["false_alarm"] == sums["missed"] == sums["confusion"] == 0


def test_missing_speaker_counts_as_missed_and_merged_speakers_as_confusion():
    ref = reference()
    without_c = frames(ref, ["A", "B", "C"])
    without_c[:, 2] = 0
    sums = local_error_sums(windows_from(without_c), ref)
    c_frames = frames(ref, ["C"])[:, 0]
    # C (frames 80..99) is seen by the windows starting at 7 and 8 s: 10 + 20 frames
    assert c_frames.sum() == 20
    assert sums["missed"] == 30 and sums["false_alarm"] == 0 and sums["confusion"] == 0

    turns = Annotation(uri="g")  # A then B, back to back: one hypothesis speaker for both
    turns[Segment(0.0, 3.5)] = "A"
    turns[Segment(3.5, 7.0)] = "B"
    merged = frames(turns, ["A", "B"])
    merged[:, 0] = np.maximum(merged[:, 0], merged[:, 1])
    merged[:, 1] = 0
    merged_sums = local_error_sums(windows_from(merged), turns)
    assert merged_sums["confusion"] > 0 and merged_sums["false_alarm"] == 0


def test_errors_outside_the_uem_are_not_counted():
    ref = reference()
    noisy = frames(ref, ["A", "B", "C"])
    noisy[70:80, 0] = 1  # false alarm in 7-8 s, where nobody speaks
    assert local_error_sums(windows_from(noisy), ref)["false_alarm"] > 0
    uem = Timeline([Segment(0.0, 7.0), Segment(8.0, 10.0)])
    inside = local_error_sums(windows_from(noisy), ref, uem)
    assert inside["false_alarm"] == 0
    assert inside["speech"] < local_error_sums(windows_from(noisy), ref)["speech"] + 1
