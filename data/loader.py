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
The random state a training batch is built under is a function of the same tuple: a worker
seeds python, numpy and torch from stable_seed("worker", seed, rank, epoch, i) before each
batch. And loading never draws from the training process's random streams: a DataLoader
takes its workers' base seed from the default torch generator each time it starts an
iterator (every pass with 0 workers, the first with persistent workers), so every loader
here has a generator of its own. A checkpoint's (epoch, batch) and the training process's
random states are thus all that exact resume needs, with or without workers.

An epoch is `batches_per_epoch` batches; by default the total annotated train duration
(regions long enough for a chunk) / duration_s / batch_size / world_size, at least 1,
i.e. the issue's "annotated duration / chunk duration / world size" chunks, in batches.

DataLoader settings: batch_size=None (items are batches), one torch thread per worker,
pin_memory (use it on CUDA), persistent_workers when num_workers > 0, prefetch_factor.
The epoch/batch sampler runs in the main process, so persistent workers follow epochs.

Workers write batches into a ring of recycled shared-memory buffers (data.slots) and the
loaders turn them back into batch dicts; `recycle=False` gives every batch fresh shared
memory (the former path, kept for bench/data.py's comparison).
"""

from __future__ import annotations

import hashlib
import random
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from data.chunks import TrainSampler, batch_spec, fill_batch, make_batch, validation_chunks
from data.index import FileIndex
from data.slots import SlotRing, layout, views


def stable_seed(*parts) -> int:
    """A 63-bit seed from a stable hash of `parts` (same on every run and machine)."""
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def default_batches_per_epoch(sampler: TrainSampler, duration_s: float, batch_size: int,
                              world_size: int = 1) -> int:
    """Annotated duration / duration_s / batch_size / world_size, at least 1."""
    return max(1, int(sampler.total_s / duration_s / batch_size / world_size))


class _Batches(Dataset):
    """Builds batches of chunks, packed in a recycled buffer unless `recycle` is False;
    `unpack` (main process) turns an item back into the batch dict."""

    index: FileIndex
    duration_s: float
    max_speakers: int
    esize: int
    video_fps: float
    stride: int

    def __init__(self, recycle: bool):
        self.recycle = bool(recycle)
        self.ring = SlotRing()

    def batch(self, chunks: Sequence[Tuple[int, float]]) -> Dict:
        options = dict(max_speakers=self.max_speakers, video_fps=self.video_fps,
                       stride=self.stride)
        if not self.recycle or get_worker_info() is None:  # in-process: plain private memory
            return make_batch(self.index, chunks, self.duration_s, esize=self.esize, **options)
        entries, nbytes = layout(batch_spec(len(chunks), self.duration_s, esize=self.esize,
                                            **options))
        slot, generation, buffer = self.ring.buffer(nbytes)
        uris = fill_batch(views(buffer, entries), self.index, chunks, self.duration_s, **options)
        return {"_buffer": buffer, "_layout": entries, "_slot": slot,
                "_generation": generation, "uri": uris}

    def unpack(self, item: Dict) -> Dict:
        return self.ring.unpack(item)


class TrainChunks(_Batches):
    """Map-style dataset of training batches: item (epoch, i) is batch i of that epoch
    (packed: `unpack` gives the batch dict)."""

    def __init__(self, index: FileIndex, *, duration_s: float, batch_size: int,
                 max_speakers: int = 3, seed: int = 0, rank: int = 0, world_size: int = 1,
                 esize: Optional[int] = None, video_fps: float = 25.0, stride: int = 10,
                 batches_per_epoch: Optional[int] = None, recycle: bool = True):
        super().__init__(recycle)
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
        if get_worker_info() is not None:  # the worker's random state: the batch's, not history's
            seed_everything(stable_seed("worker", self.seed, self.rank, int(epoch), int(i)))
        return self.batch(self.chunks(epoch, i))


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


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global random streams (in a worker)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def _dataloader(dataset: Dataset, sampler, num_workers: int, pin_memory: bool,
                prefetch_factor: int, seed: int) -> DataLoader:
    """A DataLoader of whole batches whose workers' base seed comes from a generator of its
    own (seeded with `seed`), never from the process's default torch generator."""
    extra = {}
    if num_workers > 0:
        extra = {"persistent_workers": True, "prefetch_factor": prefetch_factor,
                 "worker_init_fn": _worker_init}
    return DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=num_workers,
                      pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed),
                      **extra)


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
        self._loader = _dataloader(dataset, self._order, num_workers, pin_memory, prefetch_factor,
                                   stable_seed("loader", dataset.seed, dataset.rank))

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
        for item in self._loader:
            yield self.dataset.unpack(item)
        # a completed pass moves on to the next epoch (set_epoch overrides)
        self._order.epoch, self._order.start_batch = self._order.epoch + 1, 0


def make_train_loader(index: FileIndex, *, duration_s: float, batch_size: int,
                      max_speakers: int = 3, seed: int = 0, rank: int = 0, world_size: int = 1,
                      epoch: int = 0, start_batch: int = 0, num_workers: int = 0,
                      pin_memory: bool = False, esize: Optional[int] = None,
                      video_fps: float = 25.0, batches_per_epoch: Optional[int] = None,
                      stride: int = 10, prefetch_factor: int = 2,
                      recycle: bool = True) -> TrainLoader:
    """A `TrainLoader` starting at batch `start_batch` of `epoch` (see module docstring)."""
    dataset = TrainChunks(index, duration_s=duration_s, batch_size=batch_size,
                          max_speakers=max_speakers, seed=seed, rank=rank, world_size=world_size,
                          esize=esize, video_fps=video_fps, stride=stride,
                          batches_per_epoch=batches_per_epoch, recycle=recycle)
    loader = TrainLoader(dataset, epoch=epoch, start_batch=0, num_workers=num_workers,
                         pin_memory=pin_memory, prefetch_factor=prefetch_factor)
    loader.set_epoch(epoch, start_batch)
    return loader


class ValidationChunks(_Batches):
    """Map-style dataset: item i is batch i of the fixed `validation_chunks` of this rank
    (packed: `unpack` gives the batch dict)."""

    def __init__(self, index: FileIndex, *, duration_s: float, batch_size: int,
                 max_speakers: int = 3, rank: int = 0, world_size: int = 1,
                 esize: Optional[int] = None, video_fps: float = 25.0, stride: int = 10,
                 recycle: bool = True):
        super().__init__(recycle)
        self.index = index
        self.duration_s, self.batch_size = float(duration_s), int(batch_size)
        self.max_speakers, self.stride, self.video_fps = int(max_speakers), int(stride), video_fps
        self.esize = index.esize if esize is None else int(esize)
        self.chunks = [(r.index, s) for r, s in
                       validation_chunks(index, duration_s, rank, world_size)]

    def __len__(self) -> int:
        return (len(self.chunks) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, i: int) -> Dict:
        return self.batch(self.chunks[i * self.batch_size:(i + 1) * self.batch_size])


class ValidationLoader:
    """Iterable of validation batch dicts; len() = number of batches."""

    def __init__(self, dataset: ValidationChunks, loader: DataLoader):
        self.dataset, self._loader = dataset, loader

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[Dict]:
        for item in self._loader:
            yield self.dataset.unpack(item)


def make_validation_loader(index: FileIndex, *, duration_s: float, batch_size: int,
                           max_speakers: int = 3, rank: int = 0, world_size: int = 1,
                           num_workers: int = 0, pin_memory: bool = False,
                           esize: Optional[int] = None, video_fps: float = 25.0,
                           stride: int = 10) -> ValidationLoader:
    """Validation batch dicts, the same on every pass (the last batch may be short)."""
    dataset = ValidationChunks(index, duration_s=duration_s, batch_size=batch_size,
                               max_speakers=max_speakers, rank=rank, world_size=world_size,
                               esize=esize, video_fps=video_fps, stride=stride)
    return ValidationLoader(dataset, _dataloader(dataset, range(len(dataset)), num_workers,
                                                 pin_memory, 2, stable_seed("validation", rank)))
