"""Chunk targets against frames computed by hand from the receptive field numbers."""

from __future__ import annotations

import math

import numpy as np

from data.index import FileRecord
from data.targets import chunk_target

# SincNet stride 10 at 16 kHz: first frame centre at sample 495, 270 samples per frame.
FIRST, STEP, RATE = 495, 270, 16000


def _record(turns, speakers, labels) -> FileRecord:
    return FileRecord(0, "x", "x.wav", 16000, 16000 * 60, 1, np.array([[0.0, 60.0]]),
                      np.array(turns, dtype=np.float64), np.array(speakers, dtype=np.int64),
                      tuple(labels), None, 0)


def _frames(start_s, end_s, chunk_start_s, num_frames=589):
    """Frames whose centre time chunk_start + (495 + 270 f) / 16000 is in [start, end)."""
    return [f for f in range(num_frames)
            if start_s <= chunk_start_s + (FIRST + STEP * f) / RATE < end_s]


def test_known_turns_give_hand_computed_frames():
    record = _record([(1.0, 2.0), (1.5, 4.25), (12.0, 13.0)], [1, 0, 1], ["A", "B"])
    target, labels = chunk_target(record, 0.0, 10.0, max_speakers=3)
    assert target.shape == (589, 3) and target.dtype == np.float32
    # B starts first (1.0 s), so it is column 0; A (1.5 s) column 1; column 2 empty
    assert labels == ["B", "A"]
    assert np.nonzero(target[:, 0])[0].tolist() == _frames(1.0, 2.0, 0.0)
    assert np.nonzero(target[:, 1])[0].tolist() == _frames(1.5, 4.25, 0.0)
    # by hand: ceil((1.0 - 495/16000) / (270/16000)) = 58 ... 116
    assert _frames(1.0, 2.0, 0.0)[0] == math.ceil((1.0 - FIRST / RATE) / (STEP / RATE)) == 58
    assert _frames(1.0, 2.0, 0.0)[-1] == 116
    assert target[:, 2].sum() == 0


def test_chunk_offset_and_turn_crossing_the_chunk_edges():
    record = _record([(3.0, 9.0), (12.5, 20.0)], [0, 1], ["A", "B"])
    target, labels = chunk_target(record, 5.0, 10.0)
    assert labels == ["A", "B"]
    assert np.nonzero(target[:, 0])[0].tolist() == _frames(3.0, 9.0, 5.0)
    assert np.nonzero(target[:, 1])[0].tolist() == _frames(12.5, 20.0, 5.0)
    assert target[0, 0] == 1 and target[-1, 1] == 1


def test_most_talkative_kept_then_ordered_by_first_activity():
    # four speakers: D talks least and is dropped; order by first activity: C, A, B
    turns = [(0.5, 1.0), (2.0, 6.0), (3.0, 9.0), (0.2, 2.5), (8.0, 9.5)]
    record = _record(turns, [3, 0, 1, 2, 0], ["A", "B", "C", "D"])
    target, labels = chunk_target(record, 0.0, 10.0, max_speakers=3)
    assert labels == ["C", "A", "B"]
    assert np.nonzero(target[:, 0])[0].tolist() == _frames(0.2, 2.5, 0.0)
    a = sorted(set(_frames(2.0, 6.0, 0.0)) | set(_frames(8.0, 9.5, 0.0)))
    assert np.nonzero(target[:, 1])[0].tolist() == a


def test_other_durations_and_empty_chunks():
    record = _record([(1.0, 2.0)], [0], ["A"])
    target, labels = chunk_target(record, 0.0, 5.0, max_speakers=2)
    assert target.shape == (293, 2)  # num_frames(80000)
    assert np.nonzero(target[:, 0])[0].tolist() == _frames(1.0, 2.0, 0.0, 293)
    target, labels = chunk_target(record, 20.0, 5.0)
    assert labels == [] and target.sum() == 0
