"""data.face_tracks: linking detections, filling gaps, slots; data.face_crops' crop geometry."""

import numpy as np

from data.face_crops import crop_faces, crop_squares
from data.face_tracks import (
    FaceTrack,
    TrackSettings,
    assign_slots,
    iou,
    link_detections,
    tracks_from_boxes,
)

SETTINGS = TrackSettings(iou_threshold=0.3, max_gap=10, extend=2, min_frames=5, smooth=1)


def _box(x, y, side=40.0, p=0.99):
    return [x, y, x + side, y + side, p]


def test_two_moving_faces_become_two_tracks_through_a_missed_detection():
    detections = []
    for frame in range(0, 100, 5):
        boxes = [_box(10 + frame * 0.5, 20), _box(200, 30 + frame * 0.2)]
        if frame == 40:
            boxes = boxes[1:]                  # face 0 missed once (gap of 10 frames)
        detections.append((frame, np.array(boxes)))
    tracks = link_detections(detections, 100, SETTINGS)
    assert len(tracks) == 2
    left = min(tracks, key=lambda t: t.boxes[0, 0])
    assert (left.first, left.last) == (0, 97)          # extended by 2 past frame 95
    assert left.detected.sum() == 19
    at_40 = left.boxes[40 - left.first]                # interpolated across the miss
    np.testing.assert_allclose(at_40[:2], [30.0, 20.0], atol=1e-4)


def test_a_long_gap_or_a_jump_starts_a_new_track_and_short_ones_are_dropped():
    detections = [(f, np.array([_box(10, 10)])) for f in (0, 5, 10, 15)]
    detections += [(f, np.array([_box(10, 10)])) for f in (40, 45, 50)]   # gap 25 > 10
    detections += [(f, np.array([_box(300, 10)])) for f in (55, 60)]       # jump: IoU 0
    detections += [(70, np.array([_box(500, 10)]))]                        # 1 detection
    settings = TrackSettings(max_gap=10, extend=2, min_frames=6, smooth=1)
    tracks = link_detections(detections, 80, settings)
    spans = sorted((t.first, t.last) for t in tracks)
    assert spans == [(0, 17), (38, 52), (53, 62)]      # the lone one spans 5 frames < 6


def test_given_boxes_are_split_at_gaps_and_keep_their_labels():
    frames = np.array([0, 1, 2, 3, 4, 5, 6, 30, 31, 32, 33, 34, 35])
    boxes = np.array([[10, 10, 50, 50]] * len(frames), np.float32)
    tracks = tracks_from_boxes({"ent:1": (frames, boxes)}, 40,
                               TrackSettings(max_gap=12, extend=0, min_frames=5))
    assert [(t.first, t.last, t.label) for t in tracks] == [(0, 6, "ent:1"), (30, 35, "ent:1")]


def test_slots_go_to_the_most_important_tracks_and_never_change():
    def track(first, last, side):
        n = last - first + 1
        return FaceTrack(first, np.tile([0, 0, side, side], (n, 1)).astype(np.float32),
                         np.ones(n, bool))

    tracks = [track(0, 99, 10), track(0, 99, 100), track(0, 49, 50), track(50, 99, 60),
              track(10, 20, 5)]
    slots = assign_slots(tracks, 2)
    assert slots[1] == 0                     # longest and largest first
    assert slots[0] is None                  # small, overlaps both busy slots
    assert slots[2] == slots[3] == 1         # consecutive tracks share a slot
    assert slots[4] is None
    assert assign_slots(tracks, 10) == [2, 0, 1, 1, 3]


def test_iou():
    a = np.array([[0, 0, 10, 10.0]])
    b = np.array([[5, 0, 15, 10.0], [20, 20, 30, 30.0]])
    np.testing.assert_allclose(iou(a, b), [[50 / 150, 0.0]])


def test_crops_follow_light_asd_geometry():
    grey = np.arange(200 * 300, dtype=np.int64).reshape(200, 300) % 251
    grey = grey.astype(np.uint8)
    box = np.array([[100, 48, 260, 208]], np.float32)     # half-size 80: square side 112
    cx, cy, side = crop_squares(box)[0]
    assert (cx, cy, side) == (180.0, 160.0, 112.0)
    crop = crop_faces(grey, box)[0].numpy()
    # rows 104..199 lie inside the frame, the rest reads the outside grey level 110
    np.testing.assert_array_equal(crop[:96], grey[104:200, 124:236])
    assert (crop[96:] == 110).all()
