"""A speaker embedding for every (window, local speaker), from that speaker's frames.

The embedding model is any callable `model(waveforms (B, 1, S), weights=(B, F)) ->
(B, D)` such as core.wespeaker.WeSpeakerResNet34: weights are the speaker's frame mask
at the segmentation model's frame rate. Frames where another local speaker also speaks
are left out, unless too few frames would remain.

A model whose `pools_speakers` is True (core.wespeaker.WeSpeakerResNet34) also takes
weights (B, K, F) and returns (B, K, D), its trunk run once per waveform and only the
pooling once per speaker: it then runs once per window for all the window's local
speakers (the same embeddings as one run per (window, speaker), to float rounding),
instead of once per (window, speaker) pair.
"""

from __future__ import annotations

import math
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from core.constants import SAMPLE_RATE
from eval.inference import WindowOutput, _progress


def embedding_masks(activations: np.ndarray, min_num_frames: int,
                    exclude_overlap: bool = True) -> np.ndarray:
    """(windows, F, K) hard activations -> (windows, K, F) float masks for pooling.

    The overlap-free mask of a speaker is used when it keeps more than `min_num_frames`
    frames; otherwise the full mask.
    """
    masks = np.nan_to_num(np.transpose(activations, (0, 2, 1))).astype(np.float32)
    if not exclude_overlap:
        return masks
    single = (masks.sum(axis=1, keepdims=True) < 2).astype(np.float32)
    clean = masks * single
    enough = clean.sum(axis=2, keepdims=True) > min_num_frames
    return np.where(enough, clean, masks)


def _batches(active: np.ndarray, masks: np.ndarray, batch_size: int, pools_speakers: bool
             ) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Model passes of at most batch_size waveforms: (window of each waveform (B,), weights
    (B, F), or (B, K, F) when pools_speakers, and the active (window, speaker) pairs it
    gives as `rows` into the batch and their `speakers`)."""
    if pools_speakers:  # one waveform per window with an active speaker, all its speakers
        speaking = np.flatnonzero(active.any(axis=1))
        for first in range(0, len(speaking), batch_size):
            chunk = speaking[first:first + batch_size]
            rows, speakers = np.nonzero(active[chunk])
            yield chunk, masks[chunk], rows, speakers
        return
    windows, speakers = np.nonzero(active)  # one waveform per (window, speaker) pair
    for first in range(0, len(windows), batch_size):
        chunk = slice(first, first + batch_size)
        rows = np.arange(len(windows[chunk]))
        yield windows[chunk], masks[windows[chunk], speakers[chunk]], rows, speakers[chunk]


@torch.inference_mode()
def window_embeddings(embedding_model: nn.Module, waveform: torch.Tensor,
                      windows: WindowOutput, *, batch_size: int = 32,
                      exclude_overlap: bool = True, device: Optional[torch.device] = None,
                      progress: bool = False, desc: str = "embeddings") -> np.ndarray:
    """(windows, K, D) float32 embeddings; NaN for inactive or too short local speakers.

    batch_size: waveforms per pass of the model, (window, speaker) pairs or, with a
    `pools_speakers` model, windows. Runs in float32 (no autocast): fbank features are
    sensitive to reduced precision.
    """
    if waveform.dim() == 1:
        waveform = waveform[None]
    activations = windows.activations
    num_windows, num_frames, num_local = activations.shape
    window_samples = int(round(windows.window_s * SAMPLE_RATE))
    min_samples = int(getattr(embedding_model, "min_num_samples", 400))
    min_frames = math.ceil(num_frames * min_samples / window_samples)
    masks = embedding_masks(activations, min_frames, exclude_overlap)
    active = masks.sum(axis=2) > 0
    # A speaker must cover at least min_samples of audio for a meaningful embedding.
    active &= masks.sum(axis=2) * window_samples / num_frames >= min_samples
    device = device or next(embedding_model.parameters()).device
    dimension = int(getattr(embedding_model, "dimension", 0)) or None
    out: Optional[np.ndarray] = None
    if dimension:
        out = np.full((num_windows, num_local, dimension), np.nan, dtype=np.float32)
    starts = np.rint(windows.chunk_starts_s * SAMPLE_RATE).astype(np.int64)
    padded = torch.nn.functional.pad(
        waveform.float(), (0, max(int(starts.max(initial=0)) + window_samples
                                  - waveform.shape[-1], 0)))
    embedding_model.eval()
    bar = _progress(int(active.sum()), desc, progress)
    pools_speakers = bool(getattr(embedding_model, "pools_speakers", False))
    for chunk, weights, rows, speakers in _batches(active, masks, batch_size, pools_speakers):
        waves = torch.stack([padded[:, starts[w]:starts[w] + window_samples] for w in chunk])
        vectors = embedding_model(waves.to(device), weights=torch.from_numpy(weights).to(device))
        vectors = vectors.float().cpu().numpy()  # (B, D), or (B, K, D) when pools_speakers
        vectors = vectors[rows, speakers] if pools_speakers else vectors[rows]
        if out is None:
            out = np.full((num_windows, num_local, vectors.shape[-1]), np.nan, dtype=np.float32)
        out[chunk[rows], speakers] = vectors
        bar.update(len(rows))
    bar.close()
    if out is None:
        out = np.full((num_windows, num_local, 1), np.nan, dtype=np.float32)
    return out
