"""What an audio file's header says, and whether the file holds what it promises.

    header = read_header(path)   # AudioHeader(sample_rate, num_samples, channels, missing_samples)
    truncation_message(path, header) -> one line, or None when nothing is missing

num_samples counts the audio frames (samples per channel) the file really holds, as
libsndfile reads them. missing_samples: frames a WAV header's data chunk promises beyond
those (a file cut short while it was written or copied); libsndfile reads the shorter
file without a word, so this reads the RIFF chunks itself. 0 for other formats and for
WAV files written as a stream (data size 0 or 0xFFFFFFFF: length unknown).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import soundfile as sf

from data.errors import DataError

MAX_RIFF_CHUNKS = 64  # chunks before "data" (fmt, LIST, fact, bext, ...)


@dataclass(frozen=True)
class AudioHeader:
    """sample_rate in Hz; num_samples and missing_samples in frames at that rate."""

    sample_rate: int
    num_samples: int
    channels: int
    missing_samples: int = 0


def _promised_frames(path: Union[str, Path]) -> Optional[int]:
    """Frames a WAV file's data chunk promises, or None (not RIFF/WAVE, unknown length)."""
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = 0
        for _ in range(MAX_RIFF_CHUNKS):
            chunk = handle.read(8)
            if len(chunk) < 8:
                return None
            name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"data":
                if block_align <= 0 or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            if name == b"fmt ":
                body = handle.read(size + (size & 1))
                block_align = struct.unpack("<H", body[12:14])[0] if len(body) >= 14 else 0
            else:
                handle.seek(size + (size & 1), 1)
    return None


def read_header(path: Union[str, Path]) -> AudioHeader:
    """The header of the audio file at `path`; DataError naming the file when unreadable."""
    try:
        info = sf.info(str(path))
    except Exception as error:
        raise DataError(f"{path}: cannot read audio ({error})") from error
    frames = int(info.frames)
    promised = _promised_frames(path) if info.format == "WAV" else None
    missing = max(promised - frames, 0) if promised is not None else 0
    return AudioHeader(int(info.samplerate), frames, int(info.channels), missing)


def truncation_message(path: Union[str, Path], header: AudioHeader) -> Optional[str]:
    """One line saying that the file at `path` is cut short and by how much, or None."""
    if header.missing_samples <= 0:
        return None
    rate = header.sample_rate or 1
    promised = header.num_samples + header.missing_samples
    return (f"{path}: truncated: its header promises {promised} samples "
            f"({promised / rate:.2f} s) but the file holds {header.num_samples} "
            f"({header.num_samples / rate:.2f} s); the last {header.missing_samples / rate:.2f} "
            "s are missing and only what is there is read")
