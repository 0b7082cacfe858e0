"""The synthetic database's video: face slots whose mouth channels follow who speaks.

Video (25 fps, `esize` dims). A frame holds up to `SLOTS` = 4 face slots of width
w = esize // 4 (the remaining dims carry only noise). A slot is
`[face_identity (w - 1 dims) * (0.5 + mouth), mouth]` for the visible speaker
occupying it, zeros when empty; Gaussian noise (std 0.05) is added everywhere. `mouth` in
[0, 1] follows the speaker's own speech energy per 40 ms frame (log-compressed, smoothed
over 3 frames, shifted by a per-speaker lag of -1 to 2 frames) plus small random mouth
movement in silence. Speakers go off screen (visible about 80 % of the time, in
stretches of seconds); a speaker coming on screen takes the first free slot, so a slot is
a face track, not an identity. A frame where no speaker is visible, and 3 % of frames in
short random bursts, are missing (NaN rows). So an attention model can read who is
talking from the mouth channels and whose face it is from the identity part, even when
two voices sound the same.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from data.voice import SAMPLE_RATE

VIDEO_FPS = 25.0
SLOTS = 4


def _mouth(track: np.ndarray, num_frames: int, lag: int, rng: np.random.Generator) -> np.ndarray:
    """Mouth activity in [0, 1] per video frame from one speaker's own signal (samples,)."""
    hop = int(SAMPLE_RATE / VIDEO_FPS)
    padded = np.zeros(num_frames * hop, dtype=np.float32)
    n = min(len(track), len(padded))
    padded[:n] = track[:n]
    rms = np.sqrt(np.mean(padded.reshape(num_frames, hop) ** 2, axis=1))
    level = np.clip(np.log1p(rms / 0.005) / np.log1p(0.1 / 0.005), 0.0, 1.0)
    level = np.convolve(level, np.ones(3) / 3.0, mode="same")
    level = np.roll(level, lag)
    fidget = np.clip(np.convolve(rng.normal(0, 0.08, num_frames), np.ones(5) / 5, "same"), 0, 1)
    return np.clip(level + fidget, 0.0, 1.0).astype(np.float32)


def _visibility(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """(num_frames,) bool: on screen about 80 % of the time, in stretches of seconds."""
    visible = np.zeros(num_frames, dtype=bool)
    t, on = 0, rng.random() < 0.8
    while t < num_frames:
        mean_s = 8.0 if on else 2.0
        length = max(int(rng.exponential(mean_s) * VIDEO_FPS), 5)
        visible[t:t + length] = on
        t += length
        on = not on
    return visible


def make_video(rng: np.random.Generator, faces: Sequence[np.ndarray], tracks: np.ndarray,
               esize: int, num_frames: int) -> np.ndarray:
    """(num_frames, esize) float32 embeddings, NaN rows where the frame is missing, of the
    speakers with face identities `faces` (each (w-1,)) and own signals `tracks` (N, samples)."""
    width = esize // SLOTS
    video = np.zeros((num_frames, esize), dtype=np.float32)
    visible = np.stack([_visibility(rng, num_frames) for _ in faces])  # (N, T)
    slots = np.full(visible.shape, -1, dtype=np.int64)  # (N, T) slot of each face, -1 = none
    current = [-1] * len(faces)
    for j in range(num_frames):  # a face keeps its slot while visible; newcomers take a free one
        for s in range(len(faces)):
            if not visible[s, j]:
                current[s] = -1
            elif current[s] < 0:
                free = [k for k in range(SLOTS) if k not in current]
                current[s] = free[0] if free else -1
                visible[s, j] = bool(free)
            slots[s, j] = current[s]
    for s, face in enumerate(faces):
        mouth = _mouth(tracks[s], num_frames, int(rng.integers(-1, 3)), rng)
        for k in range(SLOTS):
            rows = slots[s] == k
            lo = k * width
            video[rows, lo:lo + width - 1] = face[None, :] * (0.5 + mouth[rows])[:, None]
            video[rows, lo + width - 1] = mouth[rows]
    video += rng.normal(0.0, 0.05, size=video.shape).astype(np.float32)
    missing = ~visible.any(axis=0)
    for _ in range(int(0.03 * num_frames / 5)):  # short random dropout bursts
        start = int(rng.integers(0, max(num_frames - 5, 1)))
        missing[start:start + int(rng.integers(2, 9))] = True
    video[missing] = np.nan
    return video
