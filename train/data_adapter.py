"""The training data as the loop sees it, built from data/ (protocol, index, loaders).

    data = build(config, model, world)
    data.batches_per_epoch     batches per epoch on each rank
    data.train(epoch, k)       iterable of batches k, k+1, ... of `epoch` (rank-local)
    data.validation()          iterable of the fixed development chunks (rank-local)

Batch k of epoch e on rank r depends on (seed, rank, epoch, k) only (data/loader.py), so
restarting at (e, k) continues exactly. Chunks are the model's duration_s unless --duration.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable

import torch

from core.models import takes_video, video_size
from train.config import Config
from train.distributed import World, barrier

Batch = Dict[str, Any]


class Data:
    """Interface of the loop's data (train.toydata.ToyData is a minimal one)."""

    batches_per_epoch: int

    def train(self, epoch: int, start_batch: int = 0) -> Iterable[Batch]:
        raise NotImplementedError

    def validation(self) -> Iterable[Batch]:
        raise NotImplementedError


class ProtocolData(Data):
    """Train and development splits of a pyannote.database protocol."""

    def __init__(self, train_loader: Any, validation_loader: Any, summary: str):
        self.loader = train_loader
        self.validation_loader = validation_loader
        self.batches_per_epoch = int(train_loader.batches_per_epoch)
        self.summary = summary

    def train(self, epoch: int, start_batch: int = 0) -> Iterable[Batch]:
        self.loader.set_epoch(epoch, start_batch)
        return self.loader

    def validation(self) -> Iterable[Batch]:
        return self.validation_loader


def build(config: Config, model: torch.nn.Module, world: World) -> ProtocolData:
    """Index the protocol's train and development splits and make rank-local loaders."""
    import data

    if not config.protocol:
        raise ValueError("--protocol is required (e.g. Synthetic.SpeakerDiarization.AV); "
                         "see `python run.py synth` for a small database to try")
    fusion = takes_video(model)
    if fusion and not config.video_dir:
        raise ValueError(f"model {config.model!r} needs video: give --video-dir (a folder of "
                         "{uri}.npy embeddings) and --esize")
    files = [config.database] if config.database else []
    protocol = data.load_protocol(config.protocol, files)
    esize = video_size(model) or 0  # 0: batches without video
    video_dir = config.video_dir if fusion else None
    cache_dir = config.experiment_dir / "index-cache"
    indexes = {}
    for split in ("train", "development"):
        # rank 0 builds and caches the index first; the others then read the cache
        for turn in (0, 1):
            if (turn == 0) == world.is_main:
                indexes[split] = data.build_index(
                    protocol, split, video_dir=video_dir, esize=esize or None,
                    video_fps=config.video_fps, cache_dir=cache_dir, database_files=files,
                    progress=world.is_main)
            barrier(world)
    duration_s = float(config.duration or model.duration_s)
    common = dict(duration_s=duration_s, batch_size=config.batch_size,
                  max_speakers=model.num_speakers, rank=world.rank,
                  world_size=world.world_size, num_workers=config.workers,
                  pin_memory=world.device.type == "cuda", esize=esize,
                  video_fps=config.video_fps, stride=model.stride)
    train_loader = data.make_train_loader(indexes["train"], seed=config.seed, **common)
    validation_loader = data.make_validation_loader(indexes["development"], **common)
    return ProtocolData(train_loader, validation_loader,
                        data.data_summary(indexes["train"], duration_s))
