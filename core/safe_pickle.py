"""Read torch checkpoints without running any code from the file.

A restricted unpickler for torch's zip format (`torch.save` since 1.6): it rebuilds
tensors, storages, OrderedDict, defaultdicts of plain types and plain containers, turns
the foreign classes that pyannote and Lightning checkpoints name (pyannote's
`Specifications`, `Problem`, `Resolution`, `Introspection`, omegaconf containers,
Lightning's `AttributeDict`) into inert `Record`s that keep their fields, and refuses
every other global by name.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint names a global that is not allowed (it could run code)."""


class CorruptCheckpointError(RuntimeError):
    """The checkpoint file cannot be read (truncated, not a torch file, ...)."""


class Record:
    """Inert stand-in for a foreign class found in a checkpoint.

    `qualname` is the original 'module.Class'; `args` the constructor arguments the pickle
    passed; `state` what it restored (a dict of fields for dataclasses); `items`/`values`
    what it filled in for dict or list subclasses. Nothing of the original class runs.
    """

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "Record":
        record = object.__new__(cls)
        object.__setattr__(record, "args", args)
        object.__setattr__(record, "state", None)
        object.__setattr__(record, "items", {})
        object.__setattr__(record, "values", [])
        return record

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "state", state)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.values.append(value)

    def extend(self, values: Any) -> None:
        self.values.extend(values)

    def field(self, name: str, default: Any = None) -> Any:
        """A field restored from the pickle (dataclass attribute), or `default`."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            return state.get(name, default)
        return default

    def __repr__(self) -> str:
        return f"Record({self.qualname}, args={self.args!r}, state={self.state!r})"


class TorchVersion(str):
    """Stand-in for torch.torch_version.TorchVersion: a plain string."""


# Enum values of pyannote.audio.core.task.{Problem, Resolution}.
ENUM_NAMES = {
    "pyannote.audio.core.task.Problem": {
        0: "BINARY_CLASSIFICATION", 1: "MONO_LABEL_CLASSIFICATION",
        2: "MULTI_LABEL_CLASSIFICATION", 3: "REPRESENTATION", 4: "REGRESSION"},
    "pyannote.audio.core.task.Resolution": {1: "FRAME", 2: "CHUNK"},
}

RECORD_CLASSES = {
    "pyannote.audio.core.task.Specifications",
    "pyannote.audio.core.task.Problem",
    "pyannote.audio.core.task.Resolution",
    "pyannote.audio.core.model.Introspection",
    "lightning.fabric.utilities.data.AttributeDict",
    "pytorch_lightning.utilities.parsing.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "typing.Any",
}
RECORD_MODULE_PREFIXES = ("omegaconf.",)

STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32,
    "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64, "IntStorage": torch.int32, "ShortStorage": torch.int16,
    "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,
}
TORCH_DTYPES = {
    name: getattr(torch, name) for name in (
        "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8",
        "uint8", "bool", "complex64", "complex128")}
BUILTINS = {"dict": dict, "list": list, "tuple": tuple, "set": set, "frozenset": frozenset,
            "int": int, "float": float, "str": str, "bool": bool, "bytes": bytes,
            "complex": complex, "slice": slice, "bytearray": bytearray}
# Python 2 names that protocol-2 pickles keep (pyannote/segmentation's omegaconf metadata
# stores the type `__builtin__.long` as a key type).
PY2_BUILTINS = {"long": int, "unicode": str}
# What a pickled defaultdict may use as its default factory: plain types only.
DEFAULT_FACTORIES = (dict, list, set, tuple, int, float, str, bool, bytes)


def _defaultdict(default_factory: Any = None, *rest: Any) -> collections.defaultdict:
    """`collections.defaultdict` as a pickle rebuilds it, for plain-type factories only
    (omegaconf's `resolver_cache` in pyannote 2.x checkpoints is `defaultdict(dict)`)."""
    if rest or not (default_factory is None or default_factory in DEFAULT_FACTORIES):
        raise UnsafeCheckpointError(
            f"defaultdict with default factory {default_factory!r} is not allowed")
    return collections.defaultdict(default_factory)


class _StorageType:
    """What `torch.FloatStorage` and friends stand for: a dtype."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as protocol-2 pickles use it for bytes; latin1 only."""
    if encoding != "latin1":
        raise UnsafeCheckpointError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: Tuple[int, ...],
                    stride: Tuple[int, ...], *rest: Any) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor):
        raise UnsafeCheckpointError("tensor rebuilt from something that is not a storage")
    if len(size) == 0 and storage.numel() == 0:
        return storage.new_empty(())
    return torch.as_strided(storage, tuple(size), tuple(stride), int(offset))


def _rebuild_tensor_v3(storage: torch.Tensor, offset: int, size: Tuple[int, ...],
                       stride: Tuple[int, ...], requires_grad: bool, hooks: Any,
                       dtype: torch.dtype, *rest: Any) -> torch.Tensor:
    return _rebuild_tensor(storage.view(torch.uint8).view(dtype), offset, size, stride)


def _rebuild_parameter(data: torch.Tensor, *rest: Any) -> torch.Tensor:
    return data


def _record_class(qualname: str) -> type:
    return type(qualname.rsplit(".", 1)[-1], (Record,), {"qualname": qualname})


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for a torch zip checkpoint's data.pkl that runs nothing from the file."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, path: str):
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._path = path
        self._storages: Dict[str, torch.Tensor] = {}
        self._records: Dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        qualname = f"{module}.{name}"
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "collections" and name == "defaultdict":
            return _defaultdict
        if module == "torch._utils":
            if name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
                return _rebuild_tensor
            if name == "_rebuild_tensor_v3":
                return _rebuild_tensor_v3
            if name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
                return _rebuild_parameter
        if module in ("torch", "torch.storage") and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        if module == "torch" and name in TORCH_DTYPES:
            return TORCH_DTYPES[name]
        if module == "torch" and name == "Size":
            return torch.Size
        if qualname == "torch.torch_version.TorchVersion":
            return TorchVersion
        if module in ("builtins", "__builtin__") and name in BUILTINS:
            return BUILTINS[name]
        if module == "__builtin__" and name in PY2_BUILTINS:
            return PY2_BUILTINS[name]
        if qualname == "_codecs.encode":
            return _latin1_encode
        if qualname in RECORD_CLASSES or module.startswith(RECORD_MODULE_PREFIXES):
            if qualname not in self._records:
                self._records[qualname] = _record_class(qualname)
            return self._records[qualname]
        raise UnsafeCheckpointError(
            f"{self._path}: refusing to load global '{qualname}' from the checkpoint "
            "(only tensors, plain containers and known pyannote/omegaconf records are allowed)")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"{self._path}: unknown persistent id {pid!r}")
        _, storage_type, key, _location, _numel = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"{self._path}: storage of unknown type {storage_type!r}")
        key = str(key)
        if key not in self._storages:
            try:
                raw = self._archive.read(f"{self._prefix}data/{key}")
            except KeyError:
                raise CorruptCheckpointError(
                    f"{self._path}: storage '{key}' is missing from the archive") from None
            dtype = storage_type.dtype
            itemsize = torch.empty((), dtype=dtype).element_size()
            if len(raw) % itemsize:
                raise CorruptCheckpointError(
                    f"{self._path}: storage '{key}' holds {len(raw)} bytes, not a multiple of "
                    f"{itemsize} for {dtype}")
            flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
            self._storages[key] = flat.view(dtype) if dtype != torch.uint8 else flat
        return self._storages[key]


def load_checkpoint_file(path: Union[str, Path], map_location: Optional[str] = "cpu") -> Any:
    """Read a `torch.save` file (zip format) safely; tensors land on `map_location`.

    Raises UnsafeCheckpointError for a forbidden global, CorruptCheckpointError for a file
    that is not a readable torch checkpoint; both name the file.
    """
    path = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise CorruptCheckpointError(
            f"{path}: not a torch checkpoint in zip format (truncated, corrupt, or saved with "
            "_use_new_zipfile_serialization=False)") from None
    with archive:
        names = archive.namelist()
        pickles = [name for name in names if name.endswith("data.pkl")]
        if not pickles:
            raise CorruptCheckpointError(f"{path}: no data.pkl inside; not a torch checkpoint")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = f"{prefix}byteorder"
        if byteorder in names and archive.read(byteorder).strip() not in (b"little", b""):
            raise CorruptCheckpointError(f"{path}: big-endian checkpoints are not supported")
        try:
            unpickler = RestrictedUnpickler(archive.read(pickles[0]), archive, prefix, path)
            result = unpickler.load()
        except (UnsafeCheckpointError, CorruptCheckpointError):
            raise
        except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError,
                TypeError, AttributeError, IndexError, KeyError, RuntimeError) as error:
            raise CorruptCheckpointError(f"{path}: cannot read checkpoint: {error}") from error
    if map_location not in (None, "cpu"):
        result = _move(result, torch.device(map_location))
    return result


def _move(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return type(obj)((key, _move(value, device)) for key, value in obj.items())
    if isinstance(obj, list):
        return [_move(value, device) for value in obj]
    return obj


def to_plain(obj: Any) -> Any:
    """Turn omegaconf/Lightning records back into plain dicts, lists and scalars."""
    if isinstance(obj, Record):
        name = obj.qualname
        if name in ENUM_NAMES:
            value = obj.args[0] if obj.args else None
            return ENUM_NAMES[name].get(value, value)
        if name.startswith("omegaconf."):
            content = obj.field("_content")
            if content is None:
                content = obj.field("_val")
            return to_plain(content)
        if obj.items:
            return {key: to_plain(value) for key, value in obj.items.items()}
        if obj.values:
            return [to_plain(value) for value in obj.values]
        state = obj.state
        if isinstance(state, dict):
            return {key: to_plain(value) for key, value in state.items()}
        return obj
    if isinstance(obj, dict):
        return {key: to_plain(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(value) for value in obj)
    return obj
