"""Overlap-add of window outputs onto the file's frame grid, and the per-frame speaker count.

Time axis: frame i of the file is centred at `center0_s + i * frame_step_s` seconds, with
the same step and offset as the model's frames inside a window; window w starting at
`start_s` adds its frames from global frame `round(start_s / frame_step_s)` on.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def start_frames(chunk_starts_s: np.ndarray, frame_step_s: float) -> np.ndarray:
    """Global frame index of each window's first frame, shape (windows,) int64."""
    return np.rint(np.asarray(chunk_starts_s, dtype=np.float64) / frame_step_s).astype(np.int64)


def aggregate(values: np.ndarray, first_frames: np.ndarray, *, num_frames: Optional[int] = None,
              skip_average: bool = False, missing: float = 0.0) -> np.ndarray:
    """Overlap-add (windows, F, K) values onto (frames, K); NaN entries do not count.

    With `skip_average` the sum is returned; otherwise the mean over the windows that
    cover each frame. Frames covered by no (non-NaN) window get `missing`.
    """
    values = np.asarray(values, dtype=np.float64)
    num_windows, frames_per_window, num_classes = values.shape
    end = int(first_frames.max(initial=0)) + frames_per_window if num_windows else 0
    total_frames = max(end, num_frames or 0)
    sums = np.zeros((total_frames, num_classes))
    counts = np.zeros((total_frames, num_classes))
    mask = ~np.isnan(values)
    clean = np.where(mask, values, 0.0)
    for window in range(num_windows):
        first = int(first_frames[window])
        sums[first:first + frames_per_window] += clean[window]
        counts[first:first + frames_per_window] += mask[window]
    out = sums if skip_average else sums / np.maximum(counts, 1e-12)
    out[counts == 0] = missing
    if num_frames is not None:
        out = out[:num_frames]
    return out


def trim(values: np.ndarray, warm_up: float) -> np.ndarray:
    """Copy of (windows, F, K) values with the first and last `warm_up` fraction of frames NaN."""
    trimmed = np.array(values, dtype=np.float64, copy=True)
    edge = int(round(trimmed.shape[1] * warm_up))
    if edge > 0:
        trimmed[:, :edge] = np.nan
        trimmed[:, trimmed.shape[1] - edge:] = np.nan
    return trimmed


def speaker_count(activations: np.ndarray, first_frames: np.ndarray, *, warm_up: float = 0.0,
                  num_frames: Optional[int] = None) -> np.ndarray:
    """Number of active speakers per file frame, shape (frames,) int.

    activations: (windows, F, K) hard 0/1 local speakers. The per-frame number of active
    local speakers is averaged over the overlapping windows, then rounded half to even.
    pyannote.audio 4.0.7's pipeline trims nothing (warm_up 0); with `warm_up` > 0 each
    window loses that fraction of its length at both edges, and frames that only trimmed
    edges cover (the file's first and last seconds) fall back to the untrimmed average.
    """
    per_frame = np.nansum(activations, axis=-1, keepdims=True).astype(np.float64)
    per_frame[np.all(np.isnan(activations), axis=-1)] = np.nan
    untrimmed = aggregate(per_frame, first_frames, num_frames=num_frames, missing=np.nan)
    trimmed = aggregate(trim(per_frame, warm_up), first_frames, num_frames=num_frames,
                        missing=np.nan)
    average = np.where(np.isnan(trimmed), untrimmed, trimmed)[:, 0]
    return np.rint(np.nan_to_num(average, nan=0.0)).astype(np.int64)
