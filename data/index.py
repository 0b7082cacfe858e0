"""The file index: everything the chunk reader needs about a split, built once and cached.

    index = build_index(protocol, "train", video_dir="db/video", cache_dir=exp_dir)
    record = index[0]          # FileRecord (uri, audio, sample_rate, num_samples, ...)
    print(data_summary(index, duration_s=10.0))

Audio facts come from the file header (data.audio_header), never from decoding. The index is
stored as a few flat numpy arrays (struct of arrays, no per-file Python objects), so
that DataLoader workers forked from the main process share it without copy-on-write
growth; `index[i]` builds a `FileRecord` view on demand.

Cache: with `cache_dir`, the index is saved as index-{split}-{key}.npz where key hashes
the protocol name, the split, the video settings, and the path, size and modification
time of the database files and of every list/RTTM/UEM file they name for the protocol
(and of the video folder). The next start with the same inputs loads it; a change of
any of them builds a new one.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from data.audio_header import read_header, truncation_message
from data.errors import DataError, DataWarning
from data.protocol import check_references, protocol_sources
from data.references import unknown_uris_message
from data.video import frame_count_message, read_video_file

__all__ = ["DataError", "DataWarning", "FileIndex", "FileRecord", "build_index", "data_summary"]

INDEX_VERSION = 1


@dataclass(frozen=True, eq=False)
class FileRecord:
    """One file of a split. Times in seconds; num_samples in audio frames at sample_rate.

    annotated: (n, 2) float64 regions; turns: (m, 2) float64 speech turns sorted by start;
    turn_speakers: (m,) int64 index into `speakers` (labels of this file); video: path
    of the (frames, esize) embeddings or None; video_frames: their count (0 when None).
    """

    index: int
    uri: str
    audio: str
    sample_rate: int
    num_samples: int
    channels: int
    annotated: np.ndarray
    turns: np.ndarray
    turn_speakers: np.ndarray
    speakers: Tuple[str, ...]
    video: Optional[str]
    video_frames: int

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate if self.sample_rate else 0.0

    @property
    def annotated_duration_s(self) -> float:
        return float(np.sum(self.annotated[:, 1] - self.annotated[:, 0]))


def _offsets(counts: Sequence[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)


class FileIndex:
    """A split's files as flat arrays; a sequence of `FileRecord`.

    Attributes: protocol (name), split, esize (video embedding size, 0 without video),
    video_fps, problems (list of one-line messages about handled problems),
    missing_video (uris whose embeddings file was not found).
    """

    FIELDS = ("uri", "audio", "sample_rate", "num_samples", "channels", "video",
              "video_frames", "annotated", "annotated_offsets", "turns", "turn_speakers",
              "turn_offsets", "speakers", "speaker_offsets")

    def __init__(self, arrays: dict, meta: dict):
        for name in self.FIELDS:
            setattr(self, name, arrays[name])
        self.protocol: str = meta["protocol"]
        self.split: str = meta["split"]
        self.esize: int = int(meta["esize"])
        self.video_fps: float = float(meta["video_fps"])
        self.problems: List[str] = list(meta["problems"])
        self.missing_video: List[str] = list(meta["missing_video"])

    def __len__(self) -> int:
        return len(self.uri)

    def __getitem__(self, i: int) -> FileRecord:
        i = int(i)
        a0, a1 = self.annotated_offsets[i], self.annotated_offsets[i + 1]
        t0, t1 = self.turn_offsets[i], self.turn_offsets[i + 1]
        s0, s1 = self.speaker_offsets[i], self.speaker_offsets[i + 1]
        video = str(self.video[i])
        return FileRecord(i, str(self.uri[i]), str(self.audio[i]), int(self.sample_rate[i]),
                          int(self.num_samples[i]), int(self.channels[i]),
                          self.annotated[a0:a1], self.turns[t0:t1], self.turn_speakers[t0:t1],
                          tuple(str(s) for s in self.speakers[s0:s1]), video or None,
                          int(self.video_frames[i]))

    def __iter__(self) -> Iterator[FileRecord]:
        return (self[i] for i in range(len(self)))

    def find(self, uri: str) -> FileRecord:
        """The record of `uri` (KeyError when absent)."""
        hits = np.nonzero(self.uri == uri)[0]
        if len(hits) == 0:
            raise KeyError(f"{uri!r} is not in the {self.split} index of {self.protocol}")
        return self[hits[0]]

    def save(self, path: Path) -> None:
        meta = {"protocol": self.protocol, "split": self.split, "esize": self.esize,
                "video_fps": self.video_fps, "problems": self.problems,
                "missing_video": self.missing_video, "version": INDEX_VERSION}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, meta=np.array(json.dumps(meta)),
                 **{name: getattr(self, name) for name in self.FIELDS})
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "FileIndex":
        with np.load(path, allow_pickle=False) as content:
            arrays = {name: content[name] for name in cls.FIELDS}
            meta = json.loads(str(content["meta"]))
        return cls(arrays, meta)


def _cache_key(name: str, split: str, sources: Sequence[Path], settings: dict) -> str:
    parts = [INDEX_VERSION, name, split, settings]
    for path in sources:
        stat = path.stat() if path.exists() else None
        parts.append((str(path), stat.st_size if stat else -1, stat.st_mtime_ns if stat else -1))
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _records(protocol, split: str, video_dir, template: str, esize: Optional[int],
             video_fps: float, progress: bool) -> Tuple[dict, dict]:
    files = list(getattr(protocol, split)())
    columns = {k: [] for k in ("uri", "audio", "sample_rate", "num_samples", "channels",
                               "video", "video_frames")}
    annotated, annotated_counts, turns, turn_speakers, turn_counts = [], [], [], [], []
    speakers, speaker_counts, problems, missing = [], [], [], []
    iterator = files
    if progress:
        from tqdm import tqdm
        iterator = tqdm(files, desc=f"indexing {split}", unit="file")
    for file in iterator:
        uri, audio = str(file["uri"]), str(file["audio"])
        info = read_header(audio)
        duration = info.num_samples / info.sample_rate if info.sample_rate else 0.0
        if info.num_samples == 0:
            problems.append(f"{uri}: empty audio file {audio}")
        if info.channels > 1:
            problems.append(f"{uri}: {info.channels} channels, averaged to mono")
        if info.sample_rate != 16000 and info.num_samples:
            problems.append(f"{uri}: {info.sample_rate} Hz, resampled to 16000 Hz")
        truncated = truncation_message(audio, info)
        if truncated:
            problems.append(f"{uri}: {truncated}")
            warnings.warn(truncated, DataWarning, stacklevel=3)
        uem = file["annotated"] if "annotated" in file else None
        regions = [(s.start, s.end) for s in uem] if uem is not None else [(0.0, duration)]
        regions = np.array([(max(s, 0.0), min(e, duration)) for s, e in regions
                            if min(e, duration) > max(s, 0.0)], dtype=np.float64).reshape(-1, 2)
        if uem is not None and sum(e - s for s, e in regions) + 1e-3 < sum(
                s.duration for s in uem):
            problems.append(f"{uri}: annotated regions beyond the end of {audio} "
                            f"({duration:.2f} s) were cut")
        labels = sorted(file["annotation"].labels())
        tracks = sorted((seg.start, seg.end, labels.index(label))
                        for seg, _, label in file["annotation"].itertracks(yield_label=True))
        if not tracks and info.num_samples:
            problems.append(f"{uri}: no speech turn in the annotation")
        video_path, video_frames = "", 0
        if video_dir is not None:
            path = Path(video_dir) / template.format(uri=uri)
            if path.is_file():
                array = read_video_file(str(path), esize)  # data.video's one rule
                mismatch = frame_count_message(str(path), len(array), video_fps, duration)
                if mismatch:
                    problems.append(f"{uri}: {mismatch}")
                    warnings.warn(mismatch, DataWarning, stacklevel=3)
                video_frames, esize = int(array.shape[0]), int(array.shape[1])
                video_path = str(path)
            else:
                missing.append(uri)
        columns["uri"].append(uri)
        columns["audio"].append(audio)
        columns["sample_rate"].append(info.sample_rate)
        columns["num_samples"].append(info.num_samples)
        columns["channels"].append(info.channels)
        columns["video"].append(video_path)
        columns["video_frames"].append(video_frames)
        annotated.append(regions)
        annotated_counts.append(len(regions))
        turns += [(s, e) for s, e, _ in tracks]
        turn_speakers += [k for _, _, k in tracks]
        turn_counts.append(len(tracks))
        speakers += labels
        speaker_counts.append(len(labels))
    arrays = {
        "uri": np.array(columns["uri"], dtype=str),
        "audio": np.array(columns["audio"], dtype=str),
        "sample_rate": np.array(columns["sample_rate"], dtype=np.int64),
        "num_samples": np.array(columns["num_samples"], dtype=np.int64),
        "channels": np.array(columns["channels"], dtype=np.int64),
        "video": np.array(columns["video"], dtype=str),
        "video_frames": np.array(columns["video_frames"], dtype=np.int64),
        "annotated": (np.concatenate(annotated) if annotated else np.zeros((0, 2))),
        "annotated_offsets": _offsets(annotated_counts),
        "turns": np.array(turns, dtype=np.float64).reshape(-1, 2),
        "turn_speakers": np.array(turn_speakers, dtype=np.int64),
        "turn_offsets": _offsets(turn_counts),
        "speakers": np.array(speakers, dtype=str),
        "speaker_offsets": _offsets(speaker_counts),
    }
    return arrays, {"esize": esize or 0, "problems": problems, "missing_video": missing}


def build_index(protocol, split: str, *, video_dir=None, video_template: str = "{uri}.npy",
                esize: Optional[int] = None, video_fps: float = 25.0, cache_dir=None,
                require_video: bool = False, database_files: Sequence[str] = (),
                progress: bool = True) -> FileIndex:
    """Index of `split` ("train", "development" or "test") of a pyannote protocol.

    video_dir/video_template: where {uri}.npy embeddings live (None: no video);
    esize: expected embedding size (None: taken from the first file found);
    cache_dir: folder for the cached index (None: no cache);
    require_video: a missing embeddings file is an error instead of a masked file;
    database_files: the database.yml files, for the cache key (default:
    PYANNOTE_DATABASE_CONFIG). Raises DataError naming the file for unreadable audio,
    a bad RTTM/UEM line (file and line number), mis-shaped embeddings or (with
    require_video) missing ones; RTTM/UEM lines for files not in the list are warned.
    """
    if split not in ("train", "development", "test"):
        raise ValueError(f"split must be train, development or test, got {split!r}")
    name = str(getattr(protocol, "name", type(protocol).__name__))
    settings = {"video_dir": str(Path(video_dir).resolve()) if video_dir else None,
                "template": video_template, "esize": esize, "fps": video_fps}
    sources = protocol_sources(name, database_files)
    if video_dir is not None:
        sources.append(Path(video_dir).resolve())
    cache = None
    if cache_dir is not None:
        key = _cache_key(name, split, sources, settings)[:16]
        cache = Path(cache_dir) / f"index-{split}-{key}.npz"
        if cache.is_file():
            index = FileIndex.load(cache)
            _report(index, require_video)
            return index
    for path, uris in check_references(name, database_files, split).items():
        warnings.warn(unknown_uris_message(path, uris, f"the {split} list of {name}"),
                      DataWarning, stacklevel=2)
    arrays, meta = _records(protocol, split, video_dir, video_template, esize, video_fps,
                           progress)
    meta.update(protocol=name, split=split, video_fps=video_fps)
    index = FileIndex(arrays, meta)
    _report(index, require_video)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        index.save(cache)
    return index


def _report(index: FileIndex, require_video: bool) -> None:
    if index.missing_video and require_video:
        raise DataError(f"--require-video: no video embeddings for {len(index.missing_video)} "
                        f"{index.split} file(s): {', '.join(index.missing_video[:10])}")
    for uri in index.missing_video:
        warnings.warn(f"{uri}: no video embeddings file; all its frames are masked",
                      DataWarning, stacklevel=3)


def data_summary(index: FileIndex, duration_s: Optional[float] = None) -> str:
    """Several lines about a split: files, hours, speakers, missing video, problems."""
    records = list(index)
    audio_h = sum(r.duration_s for r in records) / 3600
    annotated_h = sum(r.annotated_duration_s for r in records) / 3600
    speech_h = float(np.sum(index.turns[:, 1] - index.turns[:, 0])) / 3600
    lines = [f"{index.protocol} {index.split}: {len(records)} files, {audio_h:.2f} h audio, "
             f"{annotated_h:.2f} h annotated, {speech_h:.2f} h of turns, "
             f"{len(set(index.speakers.tolist()))} speakers, "
             f"{len(index.missing_video)} without video"
             + (f" (esize {index.esize}, {index.video_fps:g} fps)" if index.esize else "")]
    if duration_s is not None:
        short = [r.uri for r in records
                 if not np.any(r.annotated[:, 1] - r.annotated[:, 0] >= duration_s)]
        if short:
            lines.append(f"  {len(short)} file(s) without an annotated region of "
                         f"{duration_s:g} s, not sampled for training: {', '.join(short[:10])}")
    lines += [f"  {p}" for p in index.problems[:20]]
    if len(index.problems) > 20:
        lines.append(f"  ... and {len(index.problems) - 20} more problems")
    return "\n".join(lines)
