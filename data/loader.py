"""Training and validation loaders: map-style datasets whose items are whole batches.

    loader = make_train_loader(index, duration_s=10.0, batch_size=32, seed=0, rank=r,
                               world_size=w, epoch=e, start_batch=k, num_workers=2)
    for batch in loader: ...        # batches k .. batches_per_epoch - 1 of epoch e
    for batch in loader: ...        # then the whole of epoch e + 1, and so on
    loader.set_epoch(e, start_batch=k)   # jump anywhere (exact resume)

Exact resume: batch i of epoch e on rank r is drawn from a numpy Generator seeded by
stable_seed("train", seed, rank, epoch, i) (blake2b of the tuple), so it does not depend
on the number of DataLoader workers, on which worker builds it, or on what was drawn
before. Every rank and every worker therefore draws different chunks (the worker id is
not needed: workers build different batch indices), and the same seed reproduces them.

An epoch is `batches_per_epoch` batches; by default the total annotated train duration
(regions long enough for a chunk) / duration_s / batch_size / world_size, at least 1,
i.e. the issue's "annotated duration / chunk duration / world size" chunks, in batches.

DataLoader settings: batch_size=None (items are batches), one torch thread per worker,
pin_memory (use it on CUDA), persistent_workers when num_workers > 0, prefetch_factor.
The epoch/batch sampler runs in the main process, so persistent workers follow epochs.
"""

from __future__ import annotations

import hashlib
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from data.chunks import TrainSampler, make_batch, validation_chunks
from data.index import FileIndex


def stable_seed(*parts) -> int:
    """A 63-bit seed from a stable hash of `parts` (same on every run and machine)."""
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def default_batches_per_epoch(sampler: TrainSampler, duration_s: float, batch_size: int,
                              world_size: int = 1) -> int:
    """Annotated duration / duration_s / batch_size / world_size, at least 1."""
    return max(1, int(sampler.total_s / duration_s / batch_size / world_size))


class TrainChunks(Dataset):
    """Map-style dataset of training batches: item (epoch, i) is batch i of that epoch."""

    def __init__(self, index: FileIndex, *, duration_s: float, batch_size: int,
                 max_speakers: int = 3, seed: int = 0, rank: int = 0, world_size: int = 1,
                 esize: Optional[int] = None, video_fps: float = 25.0, stride: int = 10,
                 batches_per_epoch: Optional[int] = None):
        self.index = index
        self.duration_s = float(duration_s)
        self.batch_size = int(batch_size)
        self.max_speakers = int(max_speakers)
        self.seed, self.rank = int(seed), int(rank)
        self.esize = index.esize if esize is None else int(esize)
        self.video_fps, self.stride = float(video_fps), int(stride)
        self.sampler = TrainSampler(index, self.duration_s)
        self.batches_per_epoch = int(batches_per_epoch or default_batches_per_epoch(
            self.sampler, self.duration_s, self.batch_size, world_size))

    def __len__(self) -> int:
        return self.batches_per_epoch

    def chunks(self, epoch: int, i: int) -> List[Tuple[int, float]]:
        """[(file position, start_s)] of batch i of `epoch` on this rank."""
        rng = np.random.default_rng(stable_seed("train", self.seed, self.rank, int(epoch), int(i)))
        return self.sampler.draw(rng, self.batch_size)

    def __getitem__(self, key) -> Dict:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        return make_batch(self.index, self.chunks(epoch, i), self.duration_s,
                          max_speakers=self.max_speakers, esize=self.esize,
                          video_fps=self.video_fps, stride=self.stride)


class _EpochBatches(Sampler):
    """Yields (epoch, i) for i in [start_batch, batches_per_epoch); main process only."""

    def __init__(self, batches_per_epoch: int, epoch: int, start_batch: int):
        self.batches_per_epoch, self.epoch, self.start_batch = batches_per_epoch, epoch, start_batch

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start_batch, 0)

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        return iter([(self.epoch, i) for i in range(self.start_batch, self.batches_per_epoch)])


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def _dataloader(dataset: Dataset, sampler, num_workers: int, pin_memory: bool,
                prefetch_factor: int) -> DataLoader:
    extra = {}
    if num_workers > 0:
        extra = {"persistent_workers": True, "prefetch_factor": prefetch_factor,
                 "worker_init_fn": _worker_init}
    return DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=num_workers,
                      pin_memory=pin_memory, **extra)


class TrainLoader:
    """Iterable of training batch dicts; each full pass is one (rest of an) epoch, and a
    completed pass moves on to batch 0 of the next epoch.

    Attributes: dataset (TrainChunks), batches_per_epoch, epoch and start_batch of the
    next pass. len() = batches left in the next pass.
    """

    def __init__(self, dataset: TrainChunks, *, epoch: int, start_batch: int, num_workers: int,
                 pin_memory: bool, prefetch_factor: int):
        self.dataset = dataset
        self.batches_per_epoch = dataset.batches_per_epoch
        self._order = _EpochBatches(self.batches_per_epoch, epoch, start_batch)
        self._loader = _dataloader(dataset, self._order, num_workers, pin_memory, prefetch_factor)

    @property
    def epoch(self) -> int:
        return self._order.epoch

    @property
    def start_batch(self) -> int:
        return self._order.start_batch

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """The next pass yields batches start_batch.. of `epoch`."""
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(f"start_batch {start_batch} outside 0..{self.batches_per_epoch}")
        self._order.epoch, self._order.start_batch = int(epoch), int(start_batch)

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[Dict]:
        yield from self._loader
        # a completed pass moves on to the next epoch (set_epoch overrides)
        self._order.epoch, self._order.start_batch = self._order.epoch + 1, 0


def make_train_loader(index: FileIndex, *, duration_s: float, batch_size: int,
                      max_speakers: int = 3, seed: int = 0, rank: int = 0, world_size: int = 1,
                      epoch: int = 0, start_batch: int = 0, num_workers: int = 0,
                      pin_memory: bool = False, esize: Optional[int] = None,
                      video_fps: float = 25.0, batches_per_epoch: Optional[int] = None,
                      stride: int = 10, prefetch_factor: int = 2) -> TrainLoader:
    """A `TrainLoader` starting at batch `start_batch` of `epoch` (see module docstring)."""
    dataset = TrainChunks(index, duration_s=duration_s, batch_size=batch_size,
                          max_speakers=max_speakers, seed=seed, rank=rank, world_size=world_size,
                          esize=esize, video_fps=video_fps, stride=stride,
                          batches_per_epoch=batches_per_epoch)
    loader = TrainLoader(dataset, epoch=epoch, start_batch=0, num_workers=num_workers,
                         pin_memory=pin_memory, prefetch_factor=prefetch_factor)
    loader.set_epoch(epoch, start_batch)
    return loader


class ValidationChunks(Dataset):
    """Map-style dataset: item i is batch i of the fixed `validation_chunks` of this rank."""

    def __init__(self, index: FileIndex, *, duration_s: float, batch_size: int,
                 max_speakers: int = 3, rank: int = 0, world_size: int = 1,
                 esize: Optional[int] = None, video_fps: float = 25.0, stride: int = 10):
        self.index = index
        self.duration_s, self.batch_size = float(duration_s), int(batch_size)
        self.max_speakers, self.stride, self.video_fps = int(max_speakers), int(stride), video_fps
        self.esize = index.esize if esize is None else int(esize)
        self.chunks = [(r.index, s) for r, s in
                       validation_chunks(index, duration_s, rank, world_size)]

    def __len__(self) -> int:
        return (len(self.chunks) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, i: int) -> Dict:
        chunks = self.chunks[i * self.batch_size:(i + 1) * self.batch_size]
        return make_batch(self.index, chunks, self.duration_s, max_speakers=self.max_speakers,
                          esize=self.esize, video_fps=self.video_fps, stride=self.stride)


def make_validation_loader(index: FileIndex, *, duration_s: float, batch_size: int,
                           max_speakers: int = 3, rank: int = 0, world_size: int = 1,
                           num_workers: int = 0, pin_memory: bool = False,
                           esize: Optional[int] = None, video_fps: float = 25.0,
                           stride: int = 10) -> DataLoader:
    """DataLoader of validation batch dicts, the same on every call (last batch may be short)."""
    dataset = ValidationChunks(index, duration_s=duration_s, batch_size=batch_size,
                               max_speakers=max_speakers, rank=rank, world_size=world_size,
                               esize=esize, video_fps=video_fps, stride=stride)
    return _dataloader(dataset, range(len(dataset)), num_workers, pin_memory, 2)
