"""The safe reader accepts what real pyannote checkpoints contain, and nothing broader.

pyannote/segmentation (2.x, written with torch 1.10) pickles omegaconf metadata holding a
`collections.defaultdict(dict)` and the type `__builtin__.long`. The first tests build such
pickles here; the last ones read the real files from the weights cache (skipped when
`make weights` has not run).
"""

from __future__ import annotations

import collections
import sys
import types

import pytest
import torch

from core import load_pretrained
from core.safe_pickle import UnsafeCheckpointError, load_checkpoint_file
from core.weights import cached

V2 = "pyannote/segmentation"
V3 = "pyannote/segmentation-3.0"


def test_defaultdict_of_plain_type_and_py2_long(tmp_path, monkeypatch):
    class Long:  # pickled by reference as `__builtin__.long`, as Python 2 names int
        pass

    Long.__module__, Long.__qualname__ = "__builtin__", "long"
    monkeypatch.setitem(sys.modules, "__builtin__", types.SimpleNamespace(long=Long))
    cache = collections.defaultdict(dict)
    cache["resolver"]["x"] = 1
    path = tmp_path / "meta.bin"
    torch.save({"resolver_cache": cache, "key_type": Long, "weight": torch.arange(3.0)}, path)
    monkeypatch.delitem(sys.modules, "__builtin__")

    loaded = load_checkpoint_file(path)
    assert isinstance(loaded["resolver_cache"], collections.defaultdict)
    assert loaded["resolver_cache"].default_factory is dict
    assert loaded["resolver_cache"] == {"resolver": {"x": 1}}
    assert loaded["key_type"] is int
    assert torch.equal(loaded["weight"], torch.arange(3.0))


def test_defaultdict_with_another_factory_is_refused(tmp_path):
    path = tmp_path / "odd.bin"
    torch.save({"d": collections.defaultdict(collections.OrderedDict)}, path)
    with pytest.raises(UnsafeCheckpointError, match="default factory"):
        load_checkpoint_file(path)


def test_other_collections_and_py2_names_stay_refused(tmp_path, monkeypatch):
    path = tmp_path / "counter.bin"
    torch.save({"c": collections.Counter("aab")}, path)
    with pytest.raises(UnsafeCheckpointError, match="collections.Counter"):
        load_checkpoint_file(path)

    def execfile():  # a Python 2 builtin that must never be allowed
        pass

    execfile.__module__, execfile.__qualname__ = "__builtin__", "execfile"
    monkeypatch.setitem(sys.modules, "__builtin__", types.SimpleNamespace(execfile=execfile))
    path = tmp_path / "py2.bin"
    torch.save({"f": execfile}, path)
    monkeypatch.delitem(sys.modules, "__builtin__")
    with pytest.raises(UnsafeCheckpointError, match="__builtin__.execfile"):
        load_checkpoint_file(path)


def _real(name: str):
    path = cached(name)
    if path is None:
        pytest.skip(f"{name} not in the weights cache (run `make weights`)")
    return path


def test_real_v2_checkpoint_loads():
    """pyannote/segmentation: multi-label, 3 speakers, 5 s chunks, LSTM 128 x 4, linear 128 x 2."""
    path = _real(V2)
    raw = load_checkpoint_file(path)
    assert raw["pyannote.audio"]["versions"]["torch"] == "1.10.0+cu102"
    model = load_pretrained(str(path))
    assert model.powerset is None and model.num_classes == 3 and model.duration_s == 5.0
    assert model.lstm.hidden_size == 128 and model.lstm.num_layers == 4
    assert sum(p.numel() for p in model.parameters()) == sum(
        t.numel() for k, t in raw["state_dict"].items() if not k.endswith(("window_", "n_")))


def test_real_v3_checkpoint_loads():
    model = load_pretrained(str(_real(V3)))
    assert model.powerset is not None and model.num_classes == 7 and model.duration_s == 10.0
    assert sum(p.numel() for p in model.parameters()) == 1473265
