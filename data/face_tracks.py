"""Face tracks: detections linked across frames by overlap, filled in, smoothed, given slots.

    tracks = link_detections(detections, num_frames, settings)   # [(frame, boxes (n, 5)), ...]
    tracks = tracks_from_boxes({label: (frames (n,), boxes (n, 4))}, num_frames)  # given tracks
    slots = assign_slots(tracks, num_slots)                       # slot per track, or None

Boxes are (x1, y1, x2, y2) in pixels of the full frame; frames are indices at 25 fps.
Linking: detection frames in order; each live track (last box at most `max_gap` frames ago)
takes the unclaimed box of highest IoU with its last box if that IoU >= `iou_threshold`
(best pairs first); the other boxes start tracks. A track keeps its boxes where it was
detected, linear interpolation between them, and its first/last box held for `extend`
frames beyond its ends (a face seen at a detection frame is taken to be there until
halfway to the next one). Tracks shorter than `min_frames` are dropped. Box centres and
sizes are then median-filtered over `smooth` frames (Light-ASD's crops did the same).

Slots: the tracks' frames are written into `num_slots` slots of the embeddings file. Tracks
are served in order of importance (frames x mean box side: long, large faces first); each
takes the lowest slot that is free over its whole span, or none when all are busy there
(it is then left out, and counted). A track never changes slot, so a slot's rows between
a track's first and last frame are one face.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.signal import medfilt


@dataclass
class TrackSettings:
    iou_threshold: float = 0.3
    max_gap: int = 10          # frames a track may go undetected and still continue
    extend: int = 2            # frames a track's end boxes are held beyond them
    min_frames: int = 10       # shorter tracks are dropped
    smooth: int = 13           # median filter length (odd, frames)


@dataclass
class FaceTrack:
    """One face over consecutive frames first..first + len(boxes) - 1."""

    first: int
    boxes: np.ndarray                     # (n, 4) float32 pixels, one per frame
    detected: np.ndarray                  # (n,) bool: a detector (or annotation) box here
    label: str = ""                       # e.g. an AVA entity id
    info: Dict[str, object] = field(default_factory=dict)

    @property
    def last(self) -> int:
        return self.first + len(self.boxes) - 1

    @property
    def frames(self) -> np.ndarray:
        return np.arange(self.first, self.last + 1)

    def importance(self) -> float:
        sides = np.maximum(self.boxes[:, 2] - self.boxes[:, 0], self.boxes[:, 3] - self.boxes[:, 1])
        return float(len(self.boxes) * np.mean(sides))


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) intersection over union of boxes a (n, >= 4) and b (m, >= 4)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def link_detections(detections: Sequence[Tuple[int, np.ndarray]], num_frames: int,
                    settings: Optional[TrackSettings] = None) -> List[FaceTrack]:
    """Tracks from per-frame detections [(frame, boxes (n, >= 4)), ...] (frames increasing),
    filled in over 0..num_frames - 1 (see the module docstring)."""
    settings = settings or TrackSettings()
    raw: List[Tuple[List[int], List[np.ndarray]]] = []   # (frames, boxes) per track
    live: List[int] = []
    for frame, boxes in detections:
        boxes = np.asarray(boxes, dtype=np.float32)
        boxes = boxes.reshape(len(boxes), -1) if len(boxes) else np.zeros((0, 4), np.float32)
        live = [t for t in live if frame - raw[t][0][-1] <= settings.max_gap]
        claimed = np.zeros(len(boxes), dtype=bool)
        if live and len(boxes):
            overlap = iou(np.stack([raw[t][1][-1] for t in live]), boxes)
            for flat in np.argsort(-overlap, axis=None):
                i, k = np.unravel_index(flat, overlap.shape)
                if overlap[i, k] < settings.iou_threshold:
                    break
                if claimed[k] or raw[live[i]][0][-1] == frame:
                    continue
                raw[live[i]][0].append(frame)
                raw[live[i]][1].append(boxes[k, :4])
                claimed[k] = True
        for k in np.nonzero(~claimed)[0]:
            raw.append(([frame], [boxes[k, :4]]))
            live.append(len(raw) - 1)
    tracks = [_filled(np.array(f), np.stack(b), num_frames, settings) for f, b in raw]
    return [t for t in tracks if t is not None]


def tracks_from_boxes(boxes: Dict[str, Tuple[np.ndarray, np.ndarray]], num_frames: int,
                      settings: Optional[TrackSettings] = None) -> List[FaceTrack]:
    """Tracks from given per-frame boxes {label: (frames (n,), boxes (n, 4))}, e.g. AVA's
    annotations; a gap longer than `max_gap` frames splits a label into two tracks."""
    settings = settings or TrackSettings()
    tracks = []
    for label in sorted(boxes):
        frames, rows = boxes[label]
        order = np.argsort(frames, kind="stable")
        frames, rows = np.asarray(frames)[order], np.asarray(rows, np.float32)[order]
        frames, first_of = np.unique(frames, return_index=True)
        rows = rows[first_of]
        if not len(frames):
            continue
        breaks = np.nonzero(np.diff(frames) > settings.max_gap)[0] + 1
        for part_frames, part_rows in zip(np.split(frames, breaks), np.split(rows, breaks)):
            track = _filled(part_frames, part_rows, num_frames, settings)
            if track is not None:
                track.label = label
                tracks.append(track)
    return tracks


def _filled(frames: np.ndarray, boxes: np.ndarray, num_frames: int,
            settings: TrackSettings) -> Optional[FaceTrack]:
    """Interpolated, extended, smoothed track from boxes (n, 4) at sorted frames (n,)."""
    frames = frames[(frames >= 0) & (frames < num_frames)] if num_frames else frames[:0]
    if not len(frames):
        return None
    boxes = boxes[:len(frames)]
    first = max(int(frames[0]) - settings.extend, 0)
    last = min(int(frames[-1]) + settings.extend, num_frames - 1)
    if last - first + 1 < settings.min_frames:
        return None
    span = np.arange(first, last + 1)
    filled = np.stack([np.interp(span, frames, boxes[:, c]) for c in range(4)], axis=1)
    detected = np.zeros(len(span), dtype=bool)
    detected[frames - first] = True
    return FaceTrack(first, _smoothed(filled, settings.smooth).astype(np.float32), detected)


def _smoothed(boxes: np.ndarray, length: int) -> np.ndarray:
    """Boxes (n, 4) with centre x, centre y, width, height each median-filtered."""
    if length <= 1 or len(boxes) < 3:
        return boxes
    length = min(length, len(boxes) - (1 - len(boxes) % 2))  # odd and no longer than n
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx, cy, w, h = (medfilt(v.astype(np.float64), length) for v in (cx, cy, w, h))
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def assign_slots(tracks: Sequence[FaceTrack], num_slots: int) -> List[Optional[int]]:
    """Slot of each track (None: left out), most important tracks first (module docstring)."""
    busy: List[List[Tuple[int, int]]] = [[] for _ in range(num_slots)]
    slots: List[Optional[int]] = [None] * len(tracks)
    for t in sorted(range(len(tracks)), key=lambda t: (-tracks[t].importance(), t)):
        span = (tracks[t].first, tracks[t].last)
        for slot, taken in enumerate(busy):
            if all(span[1] < lo or span[0] > hi for lo, hi in taken):
                taken.append(span)
                slots[t] = slot
                break
    return slots
