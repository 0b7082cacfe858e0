"""AVA-AVD -> a pyannote database with video embeddings: `python run.py prepare ava-avd`.

    prepare_ava_avd(dataset_dir, out_dir, workers=2)   # -> out_dir / "database.yml"

Reads the AVA-AVD release layout (github.com/zcxu-eric/AVA-AVD, dataset/README.md):

    split/{train,val,test}.list   clip names, one a line: {video_id}_c_{NN}
    split/offsets.txt             "{clip} {seconds}": where the clip starts in its video
    rttms/{clip}.rttm             speech turns, times in seconds of the whole video
    tracks/{video_id}-activespeaker.csv   AVA face boxes: video_id, time, x1, y1, x2, y2
                                  (fractions of the frame), label, entity_id[, speaker]
    videos/{video_id}.{mp4,mkv,webm,avi}

A clip spans its offset (offsets.txt; the first turn's start when absent there) to the end
of its last turn, as AVA-AVD's own preprocessing cuts its wavs. Written in out_dir:

    audio/{clip}.wav           16 kHz mono, the clip's span
    video/{clip}.npy           (frames, faces * 128) float32 (data.video_frontend), with
                               the AVA boxes of the clip's span as face tracks, or the
                               detector's when the video has no tracks file
    lists/, rttm/, uem/        per split (train, development = val, test), times from the
                               clip's start; UEM = the whole clip
    database.yml               protocol AVA-AVD.SpeakerDiarization.data

Resumable: a clip whose .npy and .wav exist is not processed again. Clips that cannot be
prepared (no video, no audio, unreadable) are left out of the lists with one line each.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from data.index import DataError
from data.protocol import database_yaml

PROTOCOL = "AVA-AVD.SpeakerDiarization.data"
SPLITS = {"train": "train", "development": "val", "test": "test"}
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
FPS = 25.0


@dataclass
class Clip:
    """One AVA-AVD clip: its turns relative to `start_s` (seconds in the video)."""

    name: str
    video_id: str
    start_s: float
    end_s: float
    turns: List[Tuple[float, float, str]]      # (start, end, speaker), clip time

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def find_layout(dataset_dir) -> Path:
    """The folder holding split/ (dataset_dir itself or its dataset/); DataError otherwise."""
    root = Path(dataset_dir)
    for candidate in (root, root / "dataset"):
        if (candidate / "split").is_dir():
            return candidate
    raise DataError(f"{root}: no split/ folder (expected the AVA-AVD layout: split/, rttms/, "
                    "tracks/, videos/)")


def read_offsets(path: Path) -> Dict[str, float]:
    offsets = {}
    if path.is_file():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            try:
                offsets[parts[0]] = float(parts[1])
            except (IndexError, ValueError):
                raise DataError(f"{path}:{number}: expected '<clip> <seconds>', got {line!r}")
    return offsets


def read_rttm(path: Path) -> List[Tuple[float, float, str]]:
    """(start, end, speaker) turns of an RTTM file, in its own time."""
    turns = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts or parts[0] != "SPEAKER":
            continue
        try:
            start, duration = float(parts[3]), float(parts[4])
        except (IndexError, ValueError):
            raise DataError(f"{path}:{number}: not an RTTM SPEAKER line: {line!r}")
        turns.append((start, start + duration, parts[7]))
    return turns


def read_clips(layout: Path, log: Callable[[str], None] = print) -> Dict[str, List[Clip]]:
    """{split: clips} for train / development / test, from the lists, offsets and RTTMs."""
    offsets = read_offsets(layout / "split" / "offsets.txt")
    clips: Dict[str, List[Clip]] = {}
    for split, name in SPLITS.items():
        listing = layout / "split" / f"{name}.list"
        if not listing.is_file():
            raise DataError(f"{listing}: missing (AVA-AVD lists train, val and test clips)")
        clips[split] = []
        for clip in listing.read_text(encoding="utf-8").split():
            rttm = layout / "rttms" / f"{clip}.rttm"
            if not rttm.is_file():
                log(f"warning: {clip}: no {rttm}; left out")
                continue
            turns = read_rttm(rttm)
            if not turns:
                log(f"warning: {clip}: {rttm} has no turn; left out")
                continue
            first, last = min(t[0] for t in turns), max(t[1] for t in turns)
            start = offsets.get(clip, first)
            if last <= start:   # turns already relative to the clip
                start, last = 0.0, last
                log(f"warning: {clip}: turns end before the offset {offsets.get(clip)}: "
                    "taken as clip time")
            else:
                turns = [(s - start, e - start, spk) for s, e, spk in turns]
            video_id = clip.rsplit("_c_", 1)[0]
            clips[split].append(Clip(clip, video_id, start, last, turns))
    return clips


def find_video(layout: Path, video_id: str) -> Optional[Path]:
    for extension in VIDEO_EXTENSIONS:
        path = layout / "videos" / f"{video_id}{extension}"
        if path.is_file():
            return path
    return None


def read_face_boxes(path: Path, clip: Clip, width: int, height: int
                    ) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """{entity_id: (frames (n,), boxes (n, 4) pixels)} of AVA's boxes inside the clip,
    frame = round((time - clip start) * 25)."""
    boxes: Dict[str, Tuple[List[int], List[List[float]]]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), 1):
            if len(row) < 8 or row[0] == "video_id":
                continue
            try:
                t = float(row[1])
                x1, y1, x2, y2 = (float(v) for v in row[2:6])
            except ValueError:
                raise DataError(f"{path}:{number}: expected video_id, time, x1, y1, x2, y2, "
                                f"label, entity_id; got {row[:8]}")
            if not clip.start_s <= t <= clip.end_s:
                continue
            frames, rows = boxes.setdefault(row[7], ([], []))
            frames.append(int(round((t - clip.start_s) * FPS)))
            rows.append([x1 * width, y1 * height, x2 * width, y2 * height])
    return {k: (np.array(f), np.array(b, np.float32)) for k, (f, b) in boxes.items()}


def _done(out: Path, clip: str) -> bool:
    return (out / "video" / f"{clip}.npy").is_file() and (out / "audio" / f"{clip}.wav").is_file()


_frontend = None   # one per worker process


def _init_worker(settings, asd_weights, device, threads) -> None:
    import torch

    from data.video_frontend import VideoFrontend

    global _frontend
    if threads:
        torch.set_num_threads(threads)
    _frontend = VideoFrontend(settings, asd_weights=asd_weights, device=device)


def prepare_clip(job: Tuple[str, Clip, str]) -> Tuple[str, Optional[str], List[str]]:
    """Process one clip in a worker: (clip name, error or None, warnings)."""
    from data.face_tracks import TrackSettings, tracks_from_boxes
    from data.video_frontend import write_outputs
    from data.video_io import probe

    layout, clip, out = Path(job[0]), job[1], Path(job[2])
    video = find_video(layout, clip.video_id)
    if video is None:
        return clip.name, f"{clip.name}: no video {layout / 'videos' / clip.video_id}.*", []
    try:
        tracks = None
        csv_path = layout / "tracks" / f"{clip.video_id}-activespeaker.csv"
        if csv_path.is_file():
            info = probe(video, FPS)
            boxes = read_face_boxes(csv_path, clip, info.width, info.height)
            num_frames = int(round(clip.duration_s * FPS))
            tracks = tracks_from_boxes(boxes, num_frames,
                                       TrackSettings(max_gap=12, extend=0, min_frames=5))
        result = _frontend.process(video, clip.start_s, clip.end_s, tracks=tracks)
        if result.waveform is None:
            return clip.name, f"{clip.name}: {video} has no audio stream", []
        write_outputs(result, out / "video", clip.name, wav_path=out / "audio" / f"{clip.name}.wav")
    except (DataError, OSError) as error:
        return clip.name, f"{clip.name}: {error}", []
    return clip.name, None, result.warnings


def write_database(out: Path, clips: Dict[str, List[Clip]]) -> Path:
    """lists/, rttm/, uem/ per split and database.yml (paths relative to it)."""
    for sub in ("lists", "rttm", "uem"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for split, items in clips.items():
        (out / "lists" / f"{split}.lst").write_text(
            "".join(f"{c.name}\n" for c in items), encoding="utf-8")
        (out / "rttm" / f"{split}.rttm").write_text("".join(
            f"SPEAKER {c.name} 1 {s:.3f} {e - s:.3f} <NA> <NA> {spk} <NA> <NA>\n"
            for c in items for s, e, spk in c.turns if e - s > 0.001), encoding="utf-8")
        (out / "uem" / f"{split}.uem").write_text(
            "".join(f"{c.name} 1 0.000 {c.duration_s:.3f}\n" for c in items), encoding="utf-8")
    yml = out / "database.yml"
    partial = yml.with_name(f"database.yml.tmp-{os.getpid()}")
    partial.write_text(database_yaml(PROTOCOL, SPLITS, scope="file"), encoding="utf-8")
    os.replace(partial, yml)
    return yml


def prepare_ava_avd(dataset_dir, out_dir, *, settings=None, asd_weights=None,
                    device: str = "cpu", workers: int = 1, threads: Optional[int] = None,
                    progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Prepare every clip of the three splits (module docstring); return database.yml."""
    from data.video_frontend import FrontendSettings

    layout = find_layout(dataset_dir)
    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "video").mkdir(parents=True, exist_ok=True)
    clips = read_clips(layout, log)
    unique = {c.name: c for items in clips.values() for c in items}
    todo = [c for c in unique.values() if not _done(out, c.name)]
    if len(todo) < len(unique):
        log(f"{len(unique) - len(todo)} of {len(unique)} clips already prepared")
    settings = settings or FrontendSettings()
    if any(not (layout / "tracks" / f"{c.video_id}-activespeaker.csv").is_file() for c in todo):
        from core.weights import WeightsError, ensure_many
        try:   # fetched once here, not by every worker
            ensure_many(["mtcnn/pnet", "mtcnn/rnet", "mtcnn/onet"], log=log)
        except WeightsError as error:
            raise DataError(f"face detector weights: {error}") from None
    failed = set()
    bar = None
    if progress and todo:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), desc="ava-avd", unit="clip")
    jobs = [(str(layout), clip, str(out)) for clip in todo]
    init = (settings, asd_weights, device, threads or (1 if workers > 1 else None))
    if workers > 1 and len(jobs) > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(workers, _init_worker, init) as pool:
            results = pool.imap_unordered(prepare_clip, jobs)
            failed = _collect(results, bar, log)
    else:
        _init_worker(*init)
        failed = _collect(map(prepare_clip, jobs), bar, log)
    if bar is not None:
        bar.close()
    kept = {split: [c for c in items if c.name not in failed] for split, items in clips.items()}
    for split, items in kept.items():
        if not items:
            raise DataError(f"AVA-AVD: no {split} clip could be prepared (see the lines above)")
    return write_database(out, kept)


def _collect(results, bar, log) -> set:
    failed = set()
    for name, error, warnings in results:
        for line in warnings:
            log(f"warning: {line}")
        if error is not None:
            log(f"error: {error}; left out")
            failed.add(name)
        if bar is not None:
            bar.update(1)
    return failed

