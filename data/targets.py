"""Frame-level speaker targets of a chunk, at the model's frame times.

    chunk_target(record, start_s, duration_s, max_speakers=3) -> (target (F, K) float32, labels)

F = core.receptive_field.num_frames(round(duration_s * 16000), stride); frame f's time
is start_s + frame_times(F)[f] (the centre of its receptive field). Frame f is active
for a speaker when that time lies inside one of the speaker's turns, start <= t < end.
(pyannote.audio's SpeakerDiarization task rounds turn boundaries to the nearest frame
instead, which can differ by one frame at a boundary.)

Speakers (K = max_speakers columns), as in pyannote's task: the speakers active in the
chunk; when there are more than K, the K most talkative (most active frames) are kept;
then they are ordered by first activity (first active frame; ties by label). Columns
past the number of speakers are zeros. `labels` names the kept speakers in column order.
"""

from __future__ import annotations

from functools import lru_cache
from typing import List, Optional, Tuple

import numpy as np

from core.receptive_field import SAMPLE_RATE, frame_times, num_frames
from data.index import FileRecord


@lru_cache(maxsize=16)
def chunk_frame_times(duration_s: float, stride: int = 10) -> np.ndarray:
    """(F,) float64 frame centre times in seconds relative to the chunk start."""
    count = num_frames(int(round(duration_s * SAMPLE_RATE)), stride)
    times = frame_times(count, stride).double().numpy()
    times.setflags(write=False)
    return times


def chunk_target(record: FileRecord, start_s: float, duration_s: float, max_speakers: int = 3,
                 stride: int = 10, out: Optional[np.ndarray] = None
                 ) -> Tuple[np.ndarray, List[str]]:
    """(F, K) float32 0/1 targets and the labels of the K columns (see module docstring)."""
    times = chunk_frame_times(float(duration_s), stride) + start_s
    if out is None:
        out = np.zeros((len(times), max_speakers), dtype=np.float32)
    else:
        out[:] = 0.0
    turns = record.turns
    if len(turns) == 0:
        return out, []
    inside = (turns[:, 0] < times[-1] + 1e-9) & (turns[:, 1] > times[0])
    if not inside.any():
        return out, []
    starts, ends = turns[inside, 0], turns[inside, 1]
    speakers = record.turn_speakers[inside]
    local, position = np.unique(speakers, return_inverse=True)
    active = np.zeros((len(times), len(local)), dtype=bool)
    # first frame with time >= start, first frame with time >= end
    first = np.searchsorted(times, starts, side="left")
    last = np.searchsorted(times, ends, side="left")
    for a, b, k in zip(first, last, position):
        active[a:b, k] = True
    counts = active.sum(axis=0)
    onset = np.where(counts > 0, active.argmax(axis=0), len(times))
    keep = [k for k in range(len(local)) if counts[k] > 0]
    if len(keep) > max_speakers:
        keep = sorted(keep, key=lambda k: (-counts[k], onset[k], k))[:max_speakers]
    keep = sorted(keep, key=lambda k: (onset[k], record.speakers[local[k]]))
    out[:, :len(keep)] = active[:, keep]
    return out, [record.speakers[local[k]] for k in keep]
