"""Face crops for Light-ASD, and its embeddings and speaking scores per track.

    crops = crop_faces(grey, boxes)                   # (H, W) uint8, (n, 4) -> (n, 112, 112) uint8
    embedder = TrackEmbedder(model); embedder.push(key, crop) ...; embedder.finish(key)
    embeddings = embedder.result(key)                 # (frames, 128) float32
    scores = speaking_scores(model, embeddings, mfcc_rows)   # (frames,) log-odds

Crop geometry (Light-ASD's demo, for a face box of half-size s = max(w, h) / 2 centred at
(x, y)): the square of side 1.4 s centred at (x, y + 0.4 s), i.e. the face from the eyes
down, grey, bilinear-resampled to 112 x 112 (pixel centres, no anti-aliasing, as
cv2.resize does); outside the frame reads grey level 110.

The visual encoder runs over a track in chunks of `chunk` frames with RECEPTIVE_FRAMES
frames of context on each side, which gives exactly what one pass over the whole track
gives (its temporal convolutions see 6 frames each way) while holding at most
chunk + 12 crops per track. Speaking scores average Light-ASD's audio-visual back end over
windows of 1 to 6 s (as its demo does); without audio, its visual-only head.
"""

from __future__ import annotations

from typing import Dict, Hashable, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.light_asd import FACE_SIZE, MFCC_PER_FRAME, RECEPTIVE_FRAMES, LightASD

OUTSIDE_GREY = 110.0
SCORE_WINDOWS_S = (1, 2, 3, 4, 5, 6)


def crop_squares(boxes: np.ndarray) -> np.ndarray:
    """(n, 3) crop squares (centre x, centre y, side) in pixels for face boxes (n, >= 4)."""
    half = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 + 0.4 * half
    return np.stack([cx, cy, 1.4 * half], axis=1)


def crop_faces(grey: np.ndarray, boxes: np.ndarray, size: int = FACE_SIZE) -> torch.Tensor:
    """(n, size, size) uint8 grey face crops of one frame `grey` (H, W) uint8."""
    if not len(boxes):
        return torch.zeros((0, size, size), dtype=torch.uint8)
    height, width = grey.shape
    squares = torch.from_numpy(crop_squares(np.asarray(boxes, np.float64)))
    steps = (torch.arange(size, dtype=torch.float64) + 0.5) / size - 0.5   # (size,) in [-.5, .5)
    xs = squares[:, 0, None] + steps[None] * squares[:, 2, None] - 0.5    # source pixel coords
    ys = squares[:, 1, None] + steps[None] * squares[:, 2, None] - 0.5
    gx = (2 * xs + 1) / width - 1                                          # (n, size) columns
    gy = (2 * ys + 1) / height - 1                                         # (n, size) rows
    grid = torch.stack([gx[:, None, :].expand(-1, size, -1),
                        gy[:, :, None].expand(-1, -1, size)], dim=-1).float()
    image = torch.from_numpy(grey).float()[None, None] - OUTSIDE_GREY
    out = F.grid_sample(image.expand(len(boxes), -1, -1, -1), grid, mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    return (out[:, 0] + OUTSIDE_GREY).round_().clamp_(0, 255).to(torch.uint8)


class TrackEmbedder:
    """Light-ASD visual embeddings of several tracks whose crops arrive frame by frame."""

    def __init__(self, model: LightASD, chunk: int = 64, device: torch.device = None):
        self.model, self.chunk = model, int(chunk)
        self.device = device or next(model.parameters()).device
        self._buffer: Dict[Hashable, List[torch.Tensor]] = {}
        self._buffer_start: Dict[Hashable, int] = {}      # track-local frame of buffer[0]
        self._emitted: Dict[Hashable, int] = {}           # frames already embedded
        self._out: Dict[Hashable, List[np.ndarray]] = {}

    def push(self, key: Hashable, crop: torch.Tensor) -> None:
        """Append the next frame's crop (112, 112) uint8 of track `key`."""
        if key not in self._buffer:
            self._buffer[key], self._buffer_start[key] = [], 0
            self._emitted[key], self._out[key] = 0, []
        self._buffer[key].append(crop)
        if len(self._buffer[key]) >= self.chunk + 2 * RECEPTIVE_FRAMES:
            self._flush(key, final=False)

    def finish(self, key: Hashable) -> None:
        """The track has no more frames: embed what is left."""
        if key in self._buffer and self._buffer[key]:
            self._flush(key, final=True)

    def result(self, key: Hashable) -> np.ndarray:
        """(frames, 128) float32 embeddings of a finished track."""
        parts = self._out.get(key, [])
        return np.concatenate(parts) if parts else np.zeros((0, 128), np.float32)

    @torch.no_grad()
    def _flush(self, key: Hashable, final: bool) -> None:
        buffer, start, done = self._buffer[key], self._buffer_start[key], self._emitted[key]
        faces = torch.stack(buffer)[None].to(self.device)
        embedded = self.model.embed_faces(faces)[0].float().cpu().numpy()
        end = start + len(buffer) if final else start + len(buffer) - RECEPTIVE_FRAMES
        self._out[key].append(embedded[done - start:end - start])
        keep_from = max(end - RECEPTIVE_FRAMES, 0)
        self._buffer[key] = buffer[keep_from - start:]
        self._buffer_start[key], self._emitted[key] = keep_from, end


@torch.no_grad()
def speaking_scores(model: LightASD, embeddings: np.ndarray,
                    mfcc: Optional[np.ndarray],
                    windows_s: Sequence[float] = SCORE_WINDOWS_S, fps: float = 25.0) -> np.ndarray:
    """(frames,) float32 log-odds of speaking for one track's embeddings (frames, 128);
    mfcc (4 frames, 13) of the same span, or None for the visual-only head."""
    device = next(model.parameters()).device
    visual = torch.from_numpy(embeddings).to(device)[None]
    if len(embeddings) == 0:
        return np.zeros(0, np.float32)
    if mfcc is None:
        return model.visual_scores(visual)[0].float().cpu().numpy()
    audio = torch.from_numpy(mfcc).to(device)[None]
    frames, total = len(embeddings), torch.zeros(len(embeddings), device=device)
    for window_s in windows_s:
        step = max(int(round(window_s * fps)), 1)
        full = frames // step * step          # whole windows go through the GRU as one batch
        if full:
            total[:full] += model.speaking_scores(
                visual[:, :full].reshape(-1, step, visual.shape[-1]),
                audio[:, :full * MFCC_PER_FRAME].reshape(-1, step * MFCC_PER_FRAME,
                                                         audio.shape[-1])).reshape(-1).float()
        if full < frames:
            total[full:] += model.speaking_scores(
                visual[:, full:], audio[:, full * MFCC_PER_FRAME:frames * MFCC_PER_FRAME])[0]
    return (total / len(windows_s)).cpu().numpy()
