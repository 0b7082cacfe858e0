"""Batches in recycled shared memory: each DataLoader worker writes its batches into a
small ring of shared buffers, which the main process hands back once it no longer uses them.

    ring = SlotRing()                                # in the dataset, before workers start
    slot, generation, buffer = ring.buffer(nbytes)   # worker: a (nbytes,) uint8 buffer
    tensors = views(buffer, entries)                 # the batch tensors, written in place
    batch = ring.unpack(item)                        # main process: the batch dict

Why: a worker returns tensors through shared memory. A fresh shared buffer per batch costs
page faults (zeroing) in the worker, mapping faults in the main process and freeing in
both: for a 33 MB batch (32 x 10 s audio + 384-dim video) that was most of the loader's
time (bench/data.py). A recycled slot has its pages in place, and a batch travels as one
uint8 buffer (one file descriptor to pass) plus its `layout`.

Safety: a slot is written again only after the main process has seen every tensor on it
die (a weak reference to the received storage expired; views, numpy arrays and tensors
saved for backward all keep the storage alive), or, with pin_memory, once its pinned copy
has arrived. The release is a generation number written into a small shared table. A
worker that finds no slot free takes a fresh buffer, as before: nothing waits, and nothing
is overwritten while in use. Memory per worker is at most RING_SLOTS buffers, whatever
the size of the database.
"""

from __future__ import annotations

import math
import os
from typing import Dict, List, Sequence, Tuple

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils.data import get_worker_info

RING_SLOTS = 6   # buffers per worker at most (prefetch 2 + building 1 + held by the loop 2-3)
MAX_WORKERS = 64  # workers with a ring; more take fresh buffers
_ALIGN = 64

Entries = Tuple[Tuple[str, Tuple[int, ...], torch.dtype, int], ...]


def layout(spec: Sequence[Tuple[str, Tuple[int, ...], torch.dtype]]) -> Tuple[Entries, int]:
    """((name, shape, dtype, byte offset), ...) of tensors packed in one buffer, and its size."""
    entries, offset = [], 0
    for name, shape, dtype in spec:
        offset = (offset + _ALIGN - 1) // _ALIGN * _ALIGN
        entries.append((name, tuple(int(n) for n in shape), dtype, offset))
        offset += math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
    return tuple(entries), offset


def views(buffer: torch.Tensor, entries: Entries) -> Dict[str, torch.Tensor]:
    """The tensors of `entries` as views of `buffer` (uint8, storage offset 0)."""
    storage = buffer.untyped_storage()
    out = {}
    for name, shape, dtype, offset in entries:
        size = torch.empty(0, dtype=dtype).element_size()
        out[name] = torch.empty(0, dtype=dtype, device=buffer.device).set_(
            storage, offset // size, shape)
    return out


def _shared(nbytes: int) -> torch.Tensor:
    storage = torch.UntypedStorage._new_shared(max(int(nbytes), 1))
    return torch.empty(0, dtype=torch.uint8).set_(storage, 0, (int(nbytes),))


class SlotRing:
    """The ring's shared release table (made in the main process, inherited or pickled
    by the workers), the worker-side buffers and the main-side pending releases."""

    def __init__(self):
        self.released = torch.zeros(MAX_WORKERS * RING_SLOTS, dtype=torch.int64).share_memory_()
        self._owner = -1
        self._buffers: List[torch.Tensor] = []  # worker side
        self._sent: List[int] = []
        self._pending: List[Tuple[int, int, StorageWeakRef]] = []  # main side

    def __getstate__(self) -> dict:  # spawned workers start with an empty ring
        return {"released": self.released}

    def __setstate__(self, state: dict) -> None:
        self.released = state["released"]
        self._owner, self._buffers, self._sent, self._pending = -1, [], [], []

    def buffer(self, nbytes: int) -> Tuple[int, int, torch.Tensor]:
        """(slot, generation, (nbytes,) uint8 buffer) to write a batch into. Outside a
        worker: private memory, slot -1; in a worker without a free slot: a fresh one."""
        info = get_worker_info()
        if info is None:
            return -1, 0, torch.empty(int(nbytes), dtype=torch.uint8)
        if self._owner != os.getpid():  # a new worker: its own buffers
            self._owner, self._buffers, self._sent = os.getpid(), [], []
        if info.id >= MAX_WORKERS:
            return -1, 0, _shared(nbytes)
        base = info.id * RING_SLOTS
        for k, buffer in enumerate(self._buffers):
            if buffer.numel() >= nbytes and int(self.released[base + k]) == self._sent[k]:
                self._sent[k] += 1
                return base + k, self._sent[k], buffer[:nbytes]
        if len(self._buffers) < RING_SLOTS:
            # generations start at pid << 32: a late release meant for an earlier worker
            # with the same id (a restarted loader) never matches this one's
            self._buffers.append(_shared(nbytes))
            self._sent.append((os.getpid() << 32) + 1)
            return base + len(self._buffers) - 1, self._sent[-1], self._buffers[-1]
        return -1, 0, _shared(nbytes)

    def unpack(self, item: Dict) -> Dict:
        """Main process: the batch dict of a packed `item` ({"_buffer", "_layout", "_slot",
        "_generation", other entries}); anything else is returned as it is."""
        if not isinstance(item, dict) or "_buffer" not in item:
            return item
        self._release_expired()
        buffer = item["_buffer"]
        batch = views(buffer, item["_layout"])
        batch.update((k, v) for k, v in item.items() if not k.startswith("_"))
        slot, generation = item["_slot"], item["_generation"]
        if slot >= 0:
            if buffer.is_pinned():  # pin_memory copied it: the slot is free already
                self.released[slot] = generation
            else:
                self._pending.append((slot, generation, StorageWeakRef(buffer.untyped_storage())))
        return batch

    def _release_expired(self) -> None:
        pending = []
        for slot, generation, ref in self._pending:
            if ref.expired():
                self.released[slot] = generation
            else:
                pending.append((slot, generation, ref))
        self._pending = pending
