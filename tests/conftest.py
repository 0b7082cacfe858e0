"""Shared pytest fixtures: a tiny synthetic audio-visual database, and a database writer.

`synthetic_db` (session scope) generates, once per test session and in about a second,
data.synthetic's database with 3 files of 20 s per split and 32-dim video
(SYNTHETIC_DB_SETTINGS), and returns a `SyntheticDB` with:

    root       Path of the folder
    database   Path of database.yml (pass it as database_files=[str(db.database)])
    protocol   "Synthetic.SpeakerDiarization.AV"
    audio_dir  root / "audio"   ({uri}.wav, 16 kHz mono)
    video_dir  root / "video"   ({uri}.npy, (500, 32) float16, NaN rows = missing frames)
    esize      32
    video_fps  25.0
    uris       {"train": [...], "development": [...], "test": [...]}

The middle file of every split (index 1) has an unannotated gap (regions 0-8 s and
12-20 s), so with 10 s chunks it has no region long enough for training. Treat the
folder as read-only; tests that change files write their own database (`write_database`).

`write_database` (function scope) is a callable
write_database(root, audio={uri: (waveform (samples,) or (samples, channels), sample_rate)},
rttm=[(uri, start_s, end_s, label)], uem=[(uri, start_s, end_s)] or None,
name="Tiny.SpeakerDiarization.T") -> Path of its database.yml; the same list, RTTM and
UEM serve train, development and test. pyannote.database's registry is global: give
every database a distinct `name` (database part included) so that FileFinder never
resolves a URI into another test's folder.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SYNTHETIC_DB_SETTINGS = {"files": 3, "minutes": 1.0, "esize": 32, "seed": 1234}


@dataclass(frozen=True)
class SyntheticDB:
    root: Path
    database: Path
    protocol: str
    audio_dir: Path
    video_dir: Path
    esize: int
    video_fps: float
    uris: Dict[str, List[str]]


@pytest.fixture(scope="session")
def synthetic_db(tmp_path_factory) -> SyntheticDB:
    from data.synthetic import PROTOCOL, VIDEO_FPS, generate_database

    root = tmp_path_factory.mktemp("synthetic_db")
    yml = generate_database(root, **SYNTHETIC_DB_SETTINGS)
    uris = {split: (root / "lists" / f"{split}.lst").read_text(encoding="utf-8").split()
            for split in ("train", "development", "test")}
    return SyntheticDB(root, yml, PROTOCOL, root / "audio", root / "video",
                       SYNTHETIC_DB_SETTINGS["esize"], VIDEO_FPS, uris)


def _write_database(root, audio, rttm, uem=None, name="Tiny.SpeakerDiarization.T") -> Path:
    import soundfile as sf

    root = Path(root)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    for uri, (waveform, rate) in audio.items():
        sf.write(root / "audio" / f"{uri}.wav", waveform, rate, subtype="PCM_16")
    (root / "list.lst").write_text("\n".join(audio) + "\n", encoding="utf-8")
    (root / "ref.rttm").write_text("".join(
        f"SPEAKER {u} 1 {s:.3f} {e - s:.3f} <NA> <NA> {label} <NA> <NA>\n"
        for u, s, e, label in rttm), encoding="utf-8")
    database, task, protocol = name.split(".")
    subset = ["          uri: list.lst", "          annotation: ref.rttm"]
    if uem is not None:
        (root / "ref.uem").write_text("".join(f"{u} 1 {s:.3f} {e:.3f}\n" for u, s, e in uem),
                                      encoding="utf-8")
        subset.append("          annotated: ref.uem")
    lines = ["Databases:", f"  {database}: audio/{{uri}}.wav", "Protocols:", f"  {database}:",
             f"    {task}:", f"      {protocol}:", "        scope: file"]
    for split in ("train", "development", "test"):
        lines += [f"        {split}:"] + subset
    yml = root / "database.yml"
    yml.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return yml


@pytest.fixture
def write_database():
    return _write_database
