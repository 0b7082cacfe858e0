"""The files to evaluate: a protocol split, RTTM references with audio, or bare audio.

A file is a dict {"uri", "audio" (path), "annotation" (Annotation, optional), "annotated"
(Timeline UEM, optional)}. Audio is read whole by data.audio.read_audio_file (mono, 16
kHz); video embeddings are `{video_dir}/{uri}.npy` (frames, E), memory-mapped by
data.video.read_video_file.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from core.constants import SAMPLE_RATE
from data.audio_header import read_header
from data.errors import DataError
from data.video import read_video_file

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".sph")


def find_video(video_dir: Optional[str], uri: str, esize: Optional[int] = None,
               duration_s: Optional[float] = None, fps: float = 25.0) -> Optional[np.ndarray]:
    """(frames, E) embeddings `{video_dir}/{uri}.npy`, memory-mapped and checked by data.video's
    read_video_file (the rule training's index uses: DataError naming the file for a wrong
    shape, dtype or esize; a warning when its frames at `fps` do not fit the audio's
    `duration_s`), or None (with a warning) when there is no such file."""
    if not video_dir:
        return None
    path = Path(video_dir) / f"{uri}.npy"
    if not path.is_file():
        warnings.warn(f"{path}: no video embeddings; {uri} is processed without video",
                      stacklevel=2)
        return None
    return read_video_file(str(path), esize, duration_s, fps)


def min_samples(model) -> int:
    """The fewest 16 kHz samples that give `model` one output frame (its receptive field:
    991 for SincNet at stride 10), 1 for a model that does not say."""
    size = getattr(model, "receptive_field_size", None)
    return int(size(1)) if callable(size) else 1


def audio_problem(path: str, least_samples: int = 1) -> Optional[str]:
    """Why the audio file at `path` cannot be diarized (one line naming it: unreadable,
    empty, shorter than `least_samples` at 16 kHz, a name with a space, which RTTM cannot
    hold), or None. Reads the header only."""
    if any(c.isspace() for c in Path(path).stem):
        return (f"{path}: the file name holds a space, which an RTTM uri cannot; rename the "
                "file")
    try:
        header = read_header(path)
    except DataError as error:
        return str(error)
    if header.num_samples == 0:
        return f"{path}: empty audio file (0 samples)"
    samples = header.num_samples * SAMPLE_RATE / max(header.sample_rate, 1)
    if samples < least_samples:
        return (f"{path}: too short: {header.num_samples / header.sample_rate:.3f} s; the "
                f"model needs {least_samples / SAMPLE_RATE:.3f} s ({least_samples} samples) "
                "for one output frame")
    return None


def usable_files(files: Sequence[Dict], least_samples: int = 1) -> List[Dict]:
    """The files with audio that can be diarized (audio_problem). A file with a reference
    that cannot is an error: DataError, one line naming every such file (so a DER is never
    computed over less than was asked); one without a reference is left out with a warning."""
    usable, refused = [], []
    for file in files:
        if not file.get("audio"):
            continue
        problem = audio_problem(file["audio"], least_samples)
        if problem is None:
            usable.append(file)
        elif file.get("annotation") is not None:
            refused.append(problem)
        else:
            warnings.warn(f"{problem}; it has no reference and is left out", stacklevel=2)
    if refused:
        raise DataError(f"{len(refused)} of {len(files)} file(s) cannot be evaluated: "
                        + "; ".join(refused))
    return usable


def protocol_files(protocol, split: str) -> List[Dict]:
    """Files of a pyannote.database protocol split ("test", "development", "train")."""
    splits = {"test": "test", "development": "development", "dev": "development",
              "train": "train"}
    if split not in splits:
        raise ValueError(f"unknown split {split!r}; use test or development")
    files = []
    for file in getattr(protocol, splits[split])():
        entry = {"uri": file["uri"], "audio": str(file["audio"])}
        entry["annotation"] = file["annotation"] if "annotation" in file else None
        entry["annotated"] = file["annotated"] if "annotated" in file else None
        files.append(entry)
    if not files:
        raise ValueError(f"protocol {protocol.name if hasattr(protocol, 'name') else ''} "
                         f"has no {split} files")
    return files


def audio_files(audio: str) -> List[Dict]:
    """Files from one audio path or every audio file of a folder (uri = file stem)."""
    path = Path(audio)
    if path.is_file():
        paths = [path]
    elif path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
        if not paths:
            raise ValueError(f"{path}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
    else:
        raise FileNotFoundError(f"--audio {audio}: no such file or folder")
    return [{"uri": p.stem, "audio": str(p), "annotation": None, "annotated": None}
            for p in paths]


def rttm_files(rttm: str, audio: str, uem: Optional[str] = None) -> List[Dict]:
    """Files named in an RTTM (and UEM), with audio `{audio}/{uri}.*`; RTTM-only or
    audio-only uris are named in a warning (RTTM-only ones keep "audio": None), and so are
    UEM-only ones. A bad RTTM/UEM line raises DataError naming the file and the line."""
    from data.references import read_rttm, read_uem

    references = read_rttm(rttm)
    uems = read_uem(uem) if uem else {}
    found = {f["uri"]: f for f in audio_files(audio)}
    missing = sorted(set(references) - set(found))
    if missing:
        warnings.warn(f"no audio in {audio} for {len(missing)} RTTM file(s), scored as all "
                      f"missed: {', '.join(missing)}", stacklevel=2)
    extra = sorted(set(found) - set(references))
    if extra:
        warnings.warn(f"{len(extra)} audio file(s) have no reference in {rttm}, not scored: "
                      f"{', '.join(extra)}", stacklevel=2)
    uem_only = sorted(set(uems) - set(found) - set(references))
    if uem_only:
        warnings.warn(f"{uem} has regions for {len(uem_only)} file(s) with neither audio nor "
                      f"reference (ignored): {', '.join(uem_only)}", stacklevel=2)
    files = []
    for uri in sorted(set(found) | set(references)):
        entry = dict(found.get(uri, {"uri": uri, "audio": None}))
        entry["annotation"] = references.get(uri)
        entry["annotated"] = uems.get(uri)
        files.append(entry)
    return files


def references_of(files: Iterable[Dict]) -> Dict[str, object]:
    """{uri: Annotation} for files that have one."""
    return {f["uri"]: f["annotation"] for f in files if f.get("annotation") is not None}
