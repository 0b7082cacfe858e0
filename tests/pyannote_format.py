"""Write checkpoints the way pyannote.audio (through Lightning) writes pytorch_model.bin.

pyannote.audio is not installed in the tests: its classes are mimicked by stand-ins that
live, while a checkpoint is written, under the module names pyannote uses
(`pyannote.audio.core.task.Specifications`, `Problem`, `Resolution`), so the pickle
names exactly the globals a real checkpoint names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import sys
import types
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch

TASK_MODULE = "pyannote.audio.core.task"


@contextlib.contextmanager
def _fake_pyannote_task() -> Iterator[types.ModuleType]:
    names = ["pyannote.audio", "pyannote.audio.core", TASK_MODULE]
    saved = {name: sys.modules.get(name) for name in names}
    module = types.ModuleType(TASK_MODULE)

    class Problem(enum.Enum):
        BINARY_CLASSIFICATION = 0
        MONO_LABEL_CLASSIFICATION = 1
        MULTI_LABEL_CLASSIFICATION = 2
        REPRESENTATION = 3
        REGRESSION = 4

    class Resolution(enum.Enum):
        FRAME = 1
        CHUNK = 2

    @dataclasses.dataclass
    class Specifications:
        problem: Problem
        resolution: Resolution
        duration: float
        min_duration: Optional[float] = None
        warm_up: Optional[Tuple[float, float]] = (0.0, 0.0)
        classes: Optional[List[str]] = None
        powerset_max_classes: Optional[int] = None
        permutation_invariant: bool = False

    for cls in (Problem, Resolution, Specifications):
        cls.__module__ = TASK_MODULE
        cls.__qualname__ = cls.__name__
        setattr(module, cls.__name__, cls)
    for name in names[:-1]:
        sys.modules[name] = types.ModuleType(name)
    sys.modules[TASK_MODULE] = module
    try:
        yield module
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def save_pyannote_checkpoint(state_dict: Dict[str, torch.Tensor], path: str, *,
                             hparams: Dict[str, Any], num_speakers: int = 3,
                             powerset_max: int = 2, duration_s: float = 10.0,
                             extra: Optional[Dict[str, Any]] = None) -> None:
    """Save `state_dict` as pyannote.audio's PyanNet checkpoint (Lightning layout)."""
    with _fake_pyannote_task() as task:
        problem = (task.Problem.MONO_LABEL_CLASSIFICATION if powerset_max
                   else task.Problem.MULTI_LABEL_CLASSIFICATION)
        specifications = task.Specifications(
            problem=problem, resolution=task.Resolution.FRAME, duration=duration_s,
            classes=[f"speaker#{i + 1}" for i in range(num_speakers)],
            powerset_max_classes=powerset_max or None, permutation_invariant=True)
        checkpoint = {
            "epoch": 0, "global_step": 0, "pytorch-lightning_version": "2.5.0",
            "state_dict": dict(state_dict),
            "hyper_parameters": {"sample_rate": 16000, "num_channels": 1, **hparams},
            "pyannote.audio": {
                "versions": {"torch": torch.__version__, "pyannote.audio": "4.0.7"},
                "architecture": {"module": "pyannote.audio.models.segmentation.PyanNet",
                                 "class": "PyanNet"},
                "specifications": specifications,
            },
            **(extra or {}),
        }
        torch.save(checkpoint, path)
