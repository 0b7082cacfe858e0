"""Local (chunk-level) DER on the evaluated split: every sliding window scored on its own,
local speakers matched to the reference speakers by the best permutation, as in training's
validation (core/local_der.py). Counts in speaker-frames, inside the UEM only; a window
keeps its K most talkative reference speakers (K = the model's local speakers), as the
training targets do."""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch
from pyannote.core import Annotation, Timeline

from core.local_der import der_sums
from eval.clustering import discretize
from eval.inference import WindowOutput


def local_error_sums(windows: WindowOutput, reference: Annotation,
                     annotated: Optional[Timeline] = None) -> Dict[str, float]:
    """{false_alarm, missed, confusion, speech} in speaker-frames over all windows of a file."""
    activations = np.nan_to_num(np.asarray(windows.activations, dtype=np.float32))
    num_windows, frames, num_local = activations.shape
    first = windows.first_frames
    total = int(first.max(initial=0)) + frames
    labels = sorted(reference.labels())
    ref = discretize(reference, labels, total, windows.center0_s, windows.frame_step_s)
    if annotated is None:
        inside = np.ones(total)
    else:
        uem = Annotation()
        for segment in annotated.support():
            uem[segment] = "annotated"
        inside = discretize(uem, ["annotated"], total, windows.center0_s,
                            windows.frame_step_s)[:, 0]
    index = first[:, None] + np.arange(frames)[None]          # (windows, F)
    ref_windows = ref[index]                                  # (windows, F, S)
    if ref_windows.shape[-1] < num_local:
        ref_windows = np.pad(ref_windows, ((0, 0), (0, 0), (0, num_local - ref_windows.shape[-1])))
    talk = ref_windows.sum(axis=1)                            # (windows, S)
    keep = np.argsort(-talk, axis=1, kind="stable")[:, :num_local]
    ref_windows = np.take_along_axis(ref_windows, keep[:, None, :], axis=2)
    mask = inside[index][..., None]
    return der_sums(torch.from_numpy(activations * mask),
                    torch.from_numpy((ref_windows * mask).astype(np.float32)), None)
