"""A tiny in-memory audio-visual task for tests and benchmarks (no files, no I/O).

Each chunk holds up to 3 "speakers", each a pure tone at its own frequency, active over
one random interval (at most 2 at once); video frames carry the activity through a fixed
random projection. Batch k of epoch e is a function of (seed, e, k) only, and rank r of W
gets rows [r*B, (r+1)*B) of the same global batch of W*B chunks: world size 1 with batch
W*B sees exactly what W ranks with batch B see together.
"""

from __future__ import annotations

import math
from typing import Dict, Iterator, Optional

import torch

from core.constants import SAMPLE_RATE

TONES_HZ = (220.0, 550.0, 1300.0)


class ToyData:
    """Same interface as train.data_adapter.Data: batches_per_epoch, train(), validation()."""

    def __init__(self, model: torch.nn.Module, *, batch_size: int = 4, duration_s: float = 2.0,
                 batches_per_epoch: int = 8, val_batches: int = 2, seed: int = 0,
                 rank: int = 0, world_size: int = 1, esize: Optional[int] = None,
                 video_fps: float = 25.0):
        self.model = model
        self.batch_size, self.duration_s = batch_size, duration_s
        self.batches_per_epoch, self.val_batches = batches_per_epoch, val_batches
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.esize = esize or getattr(model, "esize", None) or 8
        self.video_fps = video_fps
        self.num_samples = int(round(duration_s * SAMPLE_RATE))
        self.num_frames = model.num_frames(self.num_samples)
        self.frame_times = model.frame_times(self.num_frames)
        self.projection = torch.randn(3, self.esize, generator=torch.Generator().manual_seed(7))

    def batch(self, stream: int, epoch: int, index: int) -> Dict[str, object]:
        """This rank's slice of global batch `index` of `epoch` (stream 0 train, 1 val)."""
        g = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + stream * 7919 + epoch * 104_729 + index) % 2 ** 62)
        total = self.batch_size * self.world_size
        starts = torch.rand(total, 3, generator=g) * self.duration_s * 0.6
        lengths = (0.2 + torch.rand(total, 3, generator=g) * 0.6) * self.duration_s
        present = torch.rand(total, 3, generator=g) < 0.7
        phases = torch.rand(total, 3, 1, generator=g) * 2 * math.pi
        noise = 0.02 * torch.randn(total, 1, self.num_samples, generator=g)
        video_noise = 0.1 * torch.randn(total, round(self.duration_s * self.video_fps),
                                        self.esize, generator=g)
        rows = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        starts, lengths, present = starts[rows], lengths[rows], present[rows]
        phases, noise, video_noise = phases[rows], noise[rows], video_noise[rows]

        def activity(times: torch.Tensor) -> torch.Tensor:  # (B, T, 3)
            t = times.view(1, -1, 1)
            on = (t >= starts.unsqueeze(1)) & (t < (starts + lengths).unsqueeze(1))
            on = on & present.unsqueeze(1)
            third = on.sum(-1) > 2  # at most 2 speakers at once: silence speaker 2 there
            on[..., 2] &= ~third
            return on.float()

        sample_times = torch.arange(self.num_samples) / SAMPLE_RATE
        tones = torch.sin(2 * math.pi * torch.tensor(TONES_HZ).view(1, 3, 1)
                          * sample_times.view(1, 1, -1) + phases)  # (B, 3, S)
        waveforms = 0.3 * (activity(sample_times).transpose(1, 2) * tones).sum(1, keepdim=True)
        video_times = torch.arange(video_noise.shape[1]) / self.video_fps
        video = activity(video_times) @ self.projection + video_noise
        b = self.batch_size
        return {"waveforms": waveforms + noise, "video": video,
                "video_mask": torch.ones(video.shape[:2], dtype=torch.bool),
                "target": activity(self.frame_times), "uri": [f"toy{i}" for i in range(b)],
                "start_s": torch.zeros(b, dtype=torch.float64)}

    def train(self, epoch: int, start_batch: int = 0) -> Iterator[Dict[str, object]]:
        for index in range(start_batch, self.batches_per_epoch):
            yield self.batch(0, epoch, index)

    def validation(self) -> Iterator[Dict[str, object]]:
        for index in range(self.val_batches):
            yield self.batch(1, 0, index)


def toy_factory(batches_per_epoch: int = 8, val_batches: int = 2, duration_s: float = 2.0):
    """A `data_factory` for train.loop.train: ToyData sized from the config and the world."""
    def factory(config, model, world) -> ToyData:
        return ToyData(model, batch_size=config.batch_size,
                       duration_s=config.duration or duration_s,
                       batches_per_epoch=batches_per_epoch, val_batches=val_batches,
                       seed=config.seed, rank=world.rank, world_size=world.world_size,
                       esize=config.esize, video_fps=config.video_fps)
    return factory
