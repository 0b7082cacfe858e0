"""Reading audio chunks by seeking: mono, 16 kHz, zero-padded past either end of the file.

    read_audio(record) -> (1, S) float32 tensor of the whole file at 16 kHz
    read_audio_file(path) -> (1, S) float32, the whole file of a path in no protocol
    read_audio(record, start_s, duration_s) -> (1, round(duration_s * 16000)) float32
    read_audio_into(out (S,) float32 numpy, record, start_s)   # no allocation, for batches
    read_audio_into(out (S,) int16 numpy, record, start_s)     # raw PCM, if is_pcm16(record)

Only the requested samples are decoded (soundfile seek). A mono 16 kHz 16-bit PCM file
(`is_pcm16`) can also be read as raw int16 samples, without conversion: the float32
samples are exactly int16 * 2**-15 (libsndfile's normalisation), and DataLoader workers
then pass half the bytes (data.chunks.to_float32 converts in the main process).
Samples that are NaN or inf (possible in FLOAT and DOUBLE files) are read as zeros, before
channels are averaged or the file resampled, and a DataWarning names the file, how many
there were in what was read and the time of the first (once per file and process).
Several channels are averaged (a DataWarning says so once per process); a file that is not
at 16 kHz is read at its own rate and resampled with torchaudio (a DataWarning once per
file and process).
Open files are kept in a small per-process LRU (at most MAX_OPEN_FILES), reset after a
fork, so that memory does not grow with the size of the database.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile as sf
import torch

from core.constants import SAMPLE_RATE
from data.audio_header import read_header, truncation_message
from data.errors import DataError, DataWarning
from data.index import FileRecord

MAX_OPEN_FILES = 32

_open: "OrderedDict[str, sf.SoundFile]" = OrderedDict()
_owner_pid = os.getpid()
_warned: set = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, DataWarning, stacklevel=3)


def _handle(path: str) -> sf.SoundFile:
    """An open SoundFile for `path` from this process's LRU."""
    global _owner_pid
    if os.getpid() != _owner_pid:  # forked: never share file positions with the parent
        _open.clear()
        _owner_pid = os.getpid()
    handle = _open.get(path)
    if handle is None:
        try:
            handle = sf.SoundFile(path)
        except Exception as error:
            raise DataError(f"cannot open audio file {path}: {error}") from error
        _open[path] = handle
        if len(_open) > MAX_OPEN_FILES:
            _open.popitem(last=False)[1].close()
    else:
        _open.move_to_end(path)
    return handle


FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")  # the only sample formats that can hold NaN or inf


def _zero_nonfinite(samples: np.ndarray, record: FileRecord, first: int) -> None:
    """Set NaN/inf entries of `samples` ((n,) or (n, channels) float32, native samples from
    `first`) to 0, with a DataWarning naming the file, their count and the first one's time."""
    if _handle(record.audio).subtype not in FLOAT_SUBTYPES:
        return
    bad = ~np.isfinite(samples)
    if not bad.any():
        return
    rate = record.sample_rate
    at = int(np.flatnonzero(bad.reshape(len(samples), -1).any(axis=1))[0])
    _warn_once(f"nonfinite:{record.audio}",
               f"{record.audio}: {int(bad.sum())} audio samples are NaN or inf between "
               f"{first / rate:.2f} s and {(first + len(samples)) / rate:.2f} s, the first at "
               f"{(first + at) / rate:.3f} s; read as zeros (said once per file)")
    samples[bad] = 0.0


def _read_native(record: FileRecord, first: int, count: int) -> np.ndarray:
    """Samples [first, first + count) at the file's own rate, (count, channels) float32;
    NaN/inf read as zeros."""
    out = np.zeros((count, max(record.channels, 1)), dtype=np.float32)
    lo, hi = max(first, 0), min(first + count, record.num_samples)
    if hi > lo:
        handle = _handle(record.audio)
        handle.seek(lo)
        handle.read(hi - lo, dtype="float32", always_2d=True, out=out[lo - first:hi - first])
        _zero_nonfinite(out[lo - first:hi - first], record, lo)
    return out


def is_pcm16(record: FileRecord) -> bool:
    """Whether `record` reads exactly as int16 samples: mono, 16 kHz, 16-bit PCM (or empty)."""
    if record.num_samples == 0:
        return True
    if record.sample_rate != SAMPLE_RATE or record.channels != 1:
        return False
    return _handle(record.audio).subtype == "PCM_16"


def read_audio_into(out: np.ndarray, record: FileRecord, start_s: float) -> None:
    """Fill `out` (S,) with S samples at 16 kHz from `start_s` seconds on: float32 in
    [-1, 1], or raw int16 when out is int16 (only for files where is_pcm16 holds)."""
    num_samples = out.shape[0]
    if record.num_samples == 0:
        out[:] = 0
        return
    if out.dtype == np.int16 and not is_pcm16(record):
        raise ValueError(f"{record.audio} is not mono 16 kHz 16-bit PCM; read it as float32")
    if record.channels > 1:
        _warn_once("channels", f"{record.uri}: {record.channels} channels; averaging channels "
                   "to mono (said once for all files)")
    rate = record.sample_rate
    if rate == SAMPLE_RATE:
        first = int(round(start_s * SAMPLE_RATE))
        if record.channels == 1:
            lo, hi = max(first, 0), min(first + num_samples, record.num_samples)
            if hi <= lo:
                out[:] = 0
                return
            out[:lo - first] = 0  # zero only the padding: samples are written once
            out[hi - first:] = 0
            handle = _handle(record.audio)
            handle.seek(lo)
            handle.read(hi - lo, dtype=out.dtype.name, fill_value=0,
                        out=out[lo - first:hi - first])
            if out.dtype != np.int16:
                _zero_nonfinite(out[lo - first:hi - first], record, lo)
            return
        out[:] = _read_native(record, first, num_samples).mean(axis=1)
        return
    _warn_once(f"rate:{record.audio}", f"{record.uri}: {record.audio} is at {rate} Hz; "
               f"resampling to {SAMPLE_RATE} Hz on the fly")
    # native samples of context on each side for the resampling filter; the window starts
    # on the grid shared by both rates, so that output samples fall on the 16 kHz grid
    margin, unit = 64, rate // math.gcd(rate, SAMPLE_RATE)
    first = (int(np.floor(start_s * rate)) - margin) // unit * unit
    count = int(np.ceil(start_s * rate - first + num_samples * rate / SAMPLE_RATE)) + margin
    native = torch.from_numpy(_read_native(record, first, count).mean(axis=1))
    resampled = _resample(native, rate)
    offset = int(round((start_s - first / rate) * SAMPLE_RATE))
    piece = resampled[offset:offset + num_samples].numpy()
    out[:] = 0.0
    out[:len(piece)] = piece


def _resample(waveform: torch.Tensor, rate: int) -> torch.Tensor:
    import torchaudio.functional as AF

    return AF.resample(waveform, rate, SAMPLE_RATE)


def read_audio(record: FileRecord, start_s: Optional[float] = None,
               duration_s: Optional[float] = None) -> torch.Tensor:
    """(1, S) float32 at 16 kHz: the whole file, or `duration_s` seconds from `start_s`."""
    start_s = 0.0 if start_s is None else float(start_s)
    if duration_s is None:
        duration_s = max(record.duration_s - start_s, 0.0)
    out = np.zeros(int(round(duration_s * SAMPLE_RATE)), dtype=np.float32)
    read_audio_into(out, record, start_s)
    return torch.from_numpy(out).unsqueeze(0)


def file_record(path: str) -> FileRecord:
    """A FileRecord for an audio file that is in no protocol (uri = the file's stem), from
    its header: rate, length and channels; no annotation, no video. DataError naming the
    file when it cannot be read; a DataWarning when it is truncated (data.audio_header)."""
    header = read_header(path)
    message = truncation_message(path, header)
    if message:
        warnings.warn(message, DataWarning, stacklevel=2)
    empty = np.zeros((0, 2), dtype=np.float64)
    return FileRecord(index=-1, uri=Path(path).stem, audio=str(path),
                      sample_rate=header.sample_rate, num_samples=header.num_samples,
                      channels=header.channels, annotated=empty, turns=empty,
                      turn_speakers=np.zeros(0, dtype=np.int64), speakers=(), video=None,
                      video_frames=0)


def read_audio_file(path: str) -> torch.Tensor:
    """(1, S) float32 at 16 kHz: the whole audio file at `path` (eval and infer read whole
    files this way), read as read_audio reads a protocol's files."""
    return read_audio(file_record(path))
