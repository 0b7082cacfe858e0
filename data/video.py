"""Reading video embeddings for a chunk, with a present-mask.

    read_video(record, start_s, duration_s, fps, esize) -> video (Tv, E) float32, mask (Tv,) bool
    read_video_into(video (Tv, E), mask (Tv,), record, start_s, fps)   # no allocation
    video_dtype(record) -> dtype of the file's embeddings (float16 or float32), None without
    read_video_file(path, esize, duration_s, fps) -> (frames, E) memory-mapped embeddings of
        a whole file, checked by the one rule that training's index and eval both use:
    check_video(path, array, esize) -> DataError unless (frames, esize) float16/float32
    frame_count_message(path, frames, fps, duration_s) -> a warning when video and audio
        lengths differ by more than FRAME_RATIO (wrong --video-fps, or another file's)

Tv = round(duration_s * fps). Chunk frame j covers time start_s + j / fps, that is file
frame round(start_s * fps) + j. A frame is masked (False, zeros) when it is before the
file, past the end of the embeddings (embeddings shorter than the audio: the tail is
masked), holds NaN or inf, or when the file has no embeddings at all. Files are opened
with np.load(mmap_mode="r") and kept in a small per-process LRU (MAX_OPEN_FILES), so a
worker only maps the files it reads. `video` may be float16 (batches of float16 files keep
their dtype: half the bytes between processes, see data.chunks) or float32.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from typing import TYPE_CHECKING, Optional, Tuple

import numpy as np
import torch

from data.errors import DataError, DataWarning

if TYPE_CHECKING:
    from data.index import FileRecord

MAX_OPEN_FILES = 32
VIDEO_DTYPES = (np.float16, np.float32)
FRAME_RATIO = 2.0  # video lasting under half or over twice its audio is warned

_open: "OrderedDict[str, np.ndarray]" = OrderedDict()
_owner_pid = os.getpid()


def _mapped(path: str) -> np.ndarray:
    global _owner_pid
    if os.getpid() != _owner_pid:
        _open.clear()
        _owner_pid = os.getpid()
    array = _open.get(path)
    if array is None:
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as error:
            raise DataError(f"cannot read video embeddings {path}: {error}") from error
        _open[path] = array
        if len(_open) > MAX_OPEN_FILES:
            _open.popitem(last=False)
    else:
        _open.move_to_end(path)
    return array


def video_dtype(record: FileRecord) -> Optional[np.dtype]:
    """The dtype of `record`'s embeddings (float16 or float32), None when it has none."""
    return None if record.video is None else _mapped(record.video).dtype


def check_video(path: str, array: np.ndarray, esize: Optional[int] = None) -> None:
    """DataError naming the file unless `array` is (frames, E) float16 or float32 with
    E == esize (when esize is given)."""
    if array.ndim != 2:
        raise DataError(f"{path}: video embeddings must be (frames, E), got shape "
                        f"{array.shape}")
    if array.dtype not in VIDEO_DTYPES:
        raise DataError(f"{path}: video embeddings are {array.dtype}; expected float16 or "
                        "float32 (save them with .astype(numpy.float32))")
    if esize is not None and array.shape[1] != esize:
        raise DataError(f"{path}: video embeddings have size {array.shape[1]}, but the model "
                        f"takes esize {esize} (shape {array.shape})")


def frame_count_message(path: str, frames: int, fps: float, duration_s: float
                        ) -> Optional[str]:
    """One line when `frames` at `fps` last under 1/FRAME_RATIO or over FRAME_RATIO times
    the audio's `duration_s` (and differ by over a second), else None."""
    video_s = frames / fps
    if duration_s <= 0 or abs(video_s - duration_s) <= 1.0:
        return None
    if duration_s / FRAME_RATIO <= video_s <= duration_s * FRAME_RATIO:
        return None
    return (f"{path}: {frames} video frames last {video_s:.1f} s at {fps:g} fps, but the "
            f"audio lasts {duration_s:.1f} s (wrong --video-fps, or another file's "
            "embeddings?); frames past the video are masked, frames past the audio unused")


def read_video_file(path: str, esize: Optional[int] = None, duration_s: Optional[float] = None,
                    fps: float = 25.0) -> np.ndarray:
    """(frames, E) float16 or float32 embeddings of the whole file at `path`,
    memory-mapped (eval slices every window from it; training's index reads its files
    here too). esize: the width the model takes, checked when given. duration_s: the
    audio's duration, to warn (DataWarning) when the frames at `fps` do not fit it.
    Raises DataError naming the file when it cannot be read, or has another shape or dtype."""
    array = _mapped(str(path))
    check_video(str(path), array, esize)
    if duration_s is not None:
        message = frame_count_message(str(path), array.shape[0], fps, duration_s)
        if message:
            warnings.warn(message, DataWarning, stacklevel=2)
    return array


def _finite_rows(rows: np.ndarray) -> np.ndarray:
    """(n,) bool: rows of `rows` (n, E) without NaN or inf."""
    if rows.dtype == np.float16:  # exponent bits all set means inf or NaN; no conversion
        return ((rows.view(np.uint16) & 0x7C00) != 0x7C00).all(axis=1)
    return np.isfinite(rows).all(axis=1)


def read_video_into(video: np.ndarray, mask: np.ndarray, record: FileRecord, start_s: float,
                    fps: float) -> None:
    """Fill `video` (Tv, E) float32 or float16 and `mask` (Tv,) bool for the chunk from
    `start_s`."""
    if record.video is None or video.shape[1] == 0:
        video[:] = 0.0
        mask[:] = False
        return
    array = _mapped(record.video)
    if array.ndim != 2 or array.shape[1] != video.shape[1]:
        raise DataError(f"video embeddings {record.video} have shape {array.shape}; "
                        f"expected (frames, {video.shape[1]}) (--esize {video.shape[1]})")
    first = int(round(start_s * fps))
    lo, hi = max(first, 0), min(first + video.shape[0], array.shape[0])
    if hi <= lo:
        video[:] = 0.0
        mask[:] = False
        return
    video[:lo - first] = 0.0  # zero only the frames outside the file: rows are written once
    video[hi - first:] = 0.0
    mask[:lo - first] = False
    mask[hi - first:] = False
    rows = video[lo - first:hi - first]
    rows[:] = array[lo:hi]
    finite = _finite_rows(rows)
    if not finite.all():
        rows[~finite] = 0.0
    mask[lo - first:hi - first] = finite


def read_video(record: FileRecord, start_s: float, duration_s: float, fps: float = 25.0,
               esize: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(video (Tv, E) float32, mask (Tv,) bool) for `duration_s` seconds from `start_s`.

    esize defaults to the file's embedding size (0 for a file without video).
    """
    if esize is None:
        esize = int(_mapped(record.video).shape[1]) if record.video else 0
    video = np.zeros((int(round(duration_s * fps)), esize), dtype=np.float32)
    mask = np.zeros(video.shape[0], dtype=bool)
    read_video_into(video, mask, record, start_s, fps)
    return torch.from_numpy(video), torch.from_numpy(mask)
