"""Real speech for the synthetic database: LibriSpeech readers as its speakers.

The corpus folder (`../shared/real/librispeech` next to the repository by default) holds
`librispeech_train-clean-100/*.flac` (one utterance per reader) and
`librispeech_test-other/<reader>/*.flac` (10 readers x 10 utterances), with `SPEAKERS.TXT`
(reader id | sex | subset | ...) in each. Splits never share a reader: test takes the
test-other readers; train-clean-100's readers are split once and for all (not by seed) by a
stable hash of their id, DEV_FRACTION of them to development, the rest to train.

A reader's audio is described per 10 ms frame (`FRAME` samples) by its energy in dB. With
`floor` and `peak` the 5th and 95th percentiles of the reader's frame energies, a frame is
speech above floor + SPEECH_LEVEL * (peak - floor) and a possible cut point in a run of at
least two frames below floor + CUT_LEVEL * (peak - floor): pauses and the dips between
words, so that turns do not start or end mid-syllable.

A turn (`Reading.next_turn`) continues the reader's text where their previous turn in the
same file stopped (reading on through their utterances, back to the first after the last),
from one cut point to the cut point nearest the wanted length. Its reference is what the
energy VAD finds in it: speech frames, gaps shorter than BRIDGE_S bridged, runs shorter than
MIN_SPEECH_S dropped; the turn starts at the first speech frame and ends at the last, and a
pause of BRIDGE_S or longer inside it splits it in the RTTM. The audio placed keeps at most
MARGIN_S of the quiet recording on each side, faded in and out over FADE_S. Every reader
is scaled so that the RMS of their speech frames is their `loudness` (drawn per speaker).

Look-alike pairs: a pair is two readers of the same sex whose long-term average spectra
(log power in LTAS_BANDS bands of speech frames, mean removed, so gain does not count) are
closest among the unpaired readers of their split: the voices, and recording channels, that
audio alone most easily confuses, within what a cheap measure can tell.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf

from core.constants import SAMPLE_RATE

FRAME = 160  # samples per energy frame (10 ms)
FRAMES_PER_S = SAMPLE_RATE / FRAME
SPEECH_LEVEL = 0.3
CUT_LEVEL = 0.15
BRIDGE_S = 0.3
MIN_SPEECH_S = 0.05
MARGIN_S = 0.2
FADE_S = 0.01
MIN_TURN_S = 0.3
LTAS_BANDS = 24
LTAS_STRIDE = 4
DEV_FRACTION = 0.2
SUBSETS = {"train": "librispeech_train-clean-100", "development": "librispeech_train-clean-100",
           "test": "librispeech_test-other"}
DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "real" / "librispeech"


def default_speech(corpus_dir: Path = DEFAULT_DIR) -> str:
    """`corpus_dir` as a string when it holds both LibriSpeech subsets, else "synthetic"."""
    corpus_dir = Path(corpus_dir)
    if all((corpus_dir / name).is_dir() for name in set(SUBSETS.values())):
        return str(corpus_dir)
    return "synthetic"


def resolve_speech(value: Optional[str], corpus_dir: Path = DEFAULT_DIR) -> str:
    """What `generate_database(speech=...)` takes: "synthetic" or a LibriSpeech folder.

    None or "auto": LibriSpeech at `corpus_dir` when it is there, else "synthetic"; a folder
    must hold both subsets (ValueError naming what is missing)."""
    if value is None or value == "auto":
        return default_speech(corpus_dir)
    if value == "synthetic":
        return value
    missing = [name for name in sorted(set(SUBSETS.values())) if not (Path(value) / name).is_dir()]
    if missing:
        raise ValueError(f"--speech {value}: no {' or '.join(missing)} folder there (expected a "
                         f"LibriSpeech folder like {DEFAULT_DIR}, or 'synthetic')")
    return str(value)


@dataclass(frozen=True, eq=False)
class Reader:
    """One LibriSpeech reader: utterances int16 (samples,) each, frame energies in dB,
    cut points (frame indices, first and last included) per utterance, the speech threshold
    (dB), the RMS of the speech frames (full scale = 1), and the LTAS (LTAS_BANDS,)."""

    reader_id: str
    sex: str
    subset: str
    utterances: Tuple[np.ndarray, ...]
    energies_db: Tuple[np.ndarray, ...]
    cuts: Tuple[np.ndarray, ...]
    speech_db: float
    speech_rms: float
    ltas: np.ndarray


@dataclass(frozen=True)
class RealVoice:
    """A LibriSpeech reader as a synthetic speaker's voice, at `loudness` (speech RMS)."""

    reader: Reader
    loudness: float


def _frame_db(audio: np.ndarray) -> np.ndarray:
    """(frames,) energy in dB of 10 ms frames of float audio (samples,); a partial last frame
    counts."""
    padded = np.zeros(-(-len(audio) // FRAME) * FRAME, dtype=np.float32)
    padded[:len(audio)] = audio
    frames = padded.reshape(-1, FRAME)
    return 10.0 * np.log10(np.einsum("ij,ij->i", frames, frames) / FRAME + 1e-10)


def _runs(mask: np.ndarray) -> np.ndarray:
    """(runs, 2) [start, end) of the True runs of a bool (n,) array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.stack([np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]], axis=1)


def speech_runs(energies_db: np.ndarray, threshold_db: float) -> np.ndarray:
    """(runs, 2) [start, end) frames of speech: above `threshold_db`, gaps < BRIDGE_S
    bridged, runs < MIN_SPEECH_S dropped."""
    runs = _runs(energies_db > threshold_db)
    if len(runs) == 0:
        return runs
    bridge, shortest = BRIDGE_S * FRAMES_PER_S, MIN_SPEECH_S * FRAMES_PER_S
    merged = [list(runs[0])]
    for start, end in runs[1:]:
        if start - merged[-1][1] < bridge:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return np.array([r for r in merged if r[1] - r[0] >= shortest], dtype=np.int64).reshape(-1, 2)


def _ltas(utterances: Sequence[np.ndarray], energies_db: Sequence[np.ndarray],
          threshold_db: float) -> np.ndarray:
    """(LTAS_BANDS,) mean log power, in log-spaced bands from 100 Hz to 7 kHz, of every
    LTAS_STRIDE-th speech frame of int16 `utterances`; mean removed."""
    frames = []
    for audio, db in zip(utterances, energies_db):
        whole = audio[:len(audio) // FRAME * FRAME].reshape(-1, FRAME)
        frames.append(whole[db[:len(whole)] > threshold_db][::LTAS_STRIDE])
    window = np.hanning(FRAME).astype(np.float32) / 32768.0
    power = np.abs(np.fft.rfft(np.concatenate(frames) * window, n=512, axis=1)) ** 2
    edges = np.geomspace(100.0, 7000.0, LTAS_BANDS + 1) / SAMPLE_RATE * 512
    bands = np.stack([power[:, int(lo):max(int(hi), int(lo) + 1)].sum(axis=1)
                      for lo, hi in zip(edges[:-1], edges[1:])], axis=1)
    ltas = np.log(bands.mean(axis=0) + 1e-12)
    return ltas - ltas.mean()


def _sexes(folder: Path) -> Dict[str, str]:
    """{reader id: "F" or "M"} from SPEAKERS.TXT ("id | sex | subset | minutes | name")."""
    sexes = {}
    path = folder / "SPEAKERS.TXT"
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            fields = [f.strip() for f in line.split("|")]
            if not line.startswith(";") and len(fields) >= 2:
                sexes[fields[0]] = fields[1]
    return sexes


def _read_reader(reader_id: str, paths: Sequence[Path], sex: str, subset: str) -> Reader:
    utterances, energies = [], []
    for path in paths:
        audio, rate = sf.read(path, dtype="int16", always_2d=True)
        if rate != SAMPLE_RATE:
            raise ValueError(f"{path}: sample rate {rate} Hz, LibriSpeech is {SAMPLE_RATE} Hz")
        utterances.append(np.ascontiguousarray(audio[:, 0]))
        energies.append(_frame_db(utterances[-1] * np.float32(1 / 32768)))
    every = np.concatenate(energies)
    floor, peak = np.percentile(every, [5, 95])
    speech_db = float(floor + SPEECH_LEVEL * (peak - floor))
    cut_db = floor + CUT_LEVEL * (peak - floor)
    cuts = []
    for db in energies:
        centres = [(a + b) // 2 for a, b in _runs(db < cut_db) if b - a >= 2]
        cuts.append(np.unique(np.array([0, *centres, len(db)], dtype=np.int64)))
    loud = every > speech_db
    rms = float(np.sqrt(np.mean(10.0 ** (every[loud] / 10.0)))) if loud.any() else 1e-3
    return Reader(reader_id, sex, subset, tuple(utterances), tuple(energies), tuple(cuts),
                  speech_db, rms, _ltas(utterances, energies, speech_db))


@functools.lru_cache(maxsize=4)
def _load_subset(folder: str) -> Tuple[Reader, ...]:
    """Every reader of one subset folder (flat `*.flac` or `<reader>/*.flac`), by id."""
    root = Path(folder)
    paths = sorted(root.rglob("*.flac"))
    if not paths:
        raise ValueError(f"{root}: no .flac files")
    by_reader: Dict[str, List[Path]] = {}
    for path in paths:
        by_reader.setdefault(path.name.split("-")[0], []).append(path)
    sexes = _sexes(root)
    return tuple(_read_reader(rid, files, sexes.get(rid, "?"), root.name)
                 for rid, files in sorted(by_reader.items(),
                                          key=lambda item: (len(item[0]), item[0])))


def _rank(reader_id: str) -> bytes:
    return hashlib.blake2b(reader_id.encode("utf-8"), digest_size=8).digest()


def load_readers(corpus_dir, split: str) -> Tuple[Reader, ...]:
    """The readers of `split` ("train", "development", "test"); train and development split
    train-clean-100 by a stable hash of the reader id (DEV_FRACTION to development)."""
    readers = _load_subset(str(Path(corpus_dir) / SUBSETS[split]))
    if split == "test":
        return readers
    ranked = sorted(readers, key=lambda r: _rank(r.reader_id))
    dev = {r.reader_id for r in ranked[:int(round(DEV_FRACTION * len(ranked)))]}
    return tuple(r for r in readers if (r.reader_id in dev) == (split == "development"))


def make_pool(rng: np.random.Generator, readers: Sequence[Reader], pairs: Optional[int],
              singles: Optional[int]) -> List[Tuple[Reader, Optional[int]]]:
    """(reader, index of its look-alike partner or None), pairs first (partners adjacent).

    pairs None: len(readers) // 3 pairs; singles None: every reader not in a pair. Sizes
    asked for are cut to what the split holds (fewer pairs when same-sex readers run short)."""
    pairs = len(readers) // 3 if pairs is None else pairs
    singles = len(readers) if singles is None else singles
    order = [readers[k] for k in rng.permutation(len(readers))]
    pool: List[Tuple[Reader, Optional[int]]] = []
    used = set()
    for first in order:
        if len(pool) >= 2 * pairs:
            break
        if first.reader_id in used:
            continue
        mates = [r for r in order if r.reader_id not in used and r is not first
                 and r.sex == first.sex]
        if not mates:
            continue
        mate = min(mates, key=lambda r: float(np.sum((r.ltas - first.ltas) ** 2)))
        used |= {first.reader_id, mate.reader_id}
        pool += [(first, len(pool) + 1), (mate, len(pool))]
    for reader in [r for r in order if r.reader_id not in used][:singles]:
        pool.append((reader, None))
    return pool


@dataclass
class Cut:
    """One turn's audio: float32 (samples,) scaled to the speaker's loudness, `lead_s` of
    quiet before the speech starts, speech regions [(start_s, end_s)] from the speech start
    (the first starts at 0, the last ends at `speech_s`)."""

    audio: np.ndarray
    lead_s: float
    regions: List[Tuple[float, float]]
    speech_s: float


@dataclass
class Reading:
    """One speaker reading on through their utterances within one file (see the module
    docstring); starts at a random cut point of a random utterance."""

    voice: RealVoice
    rng: np.random.Generator
    utterance: int = field(init=False)
    frame: int = field(init=False)

    def __post_init__(self):
        reader = self.voice.reader
        self.utterance = int(self.rng.integers(len(reader.utterances)))
        cuts = reader.cuts[self.utterance]
        self.frame = int(cuts[self.rng.integers(max(len(cuts) - 1, 1))])

    def next_turn(self, wanted_s: float, max_s: float) -> Cut:
        """The next turn of about `wanted_s` seconds of speech, never more than `max_s`."""
        reader = self.voice.reader
        for _ in range(4 * sum(len(c) for c in reader.cuts) + 4):
            cut = self._cut(wanted_s, max_s)
            if cut is not None:
                return cut
        raise ValueError(f"LibriSpeech reader {reader.reader_id} ({reader.subset}): no speech "
                         f"above {reader.speech_db:.1f} dB in any cut")

    def _advance(self) -> None:
        self.utterance = (self.utterance + 1) % len(self.voice.reader.utterances)
        self.frame = 0

    def _cut(self, wanted_s: float, max_s: float) -> Optional[Cut]:
        reader = self.voice.reader
        cuts, db = reader.cuts[self.utterance], reader.energies_db[self.utterance]
        samples = reader.utterances[self.utterance]
        start = self.frame
        later = cuts[cuts >= start + MIN_TURN_S * FRAMES_PER_S]
        if len(later) == 0:
            self._advance()
            return None
        limit = start + max(int(max_s * FRAMES_PER_S), 1)
        fitting = later[later <= limit]
        if len(fitting):
            end = int(fitting[np.argmin(np.abs(fitting - start - wanted_s * FRAMES_PER_S))])
        else:  # only at the end of a file: cut where the file ends
            end = min(limit, len(db))
        self.frame = end
        if end >= len(db):
            self._advance()
        runs = speech_runs(db[start:end], reader.speech_db)
        if len(runs) == 0:
            return None
        first, last = start + int(runs[0, 0]), start + int(runs[-1, 1])
        margin = int(MARGIN_S * FRAMES_PER_S)
        lo, hi = max(start, first - margin), min(end, last + margin)
        audio = samples[lo * FRAME:hi * FRAME].astype(np.float32)
        audio *= self.voice.loudness / reader.speech_rms / 32768.0
        fade = min(int(FADE_S * SAMPLE_RATE), len(audio) // 2)
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        audio[:fade] *= ramp
        audio[len(audio) - fade:] *= ramp[::-1]
        regions = [((a + start - first) / FRAMES_PER_S, (b + start - first) / FRAMES_PER_S)
                   for a, b in runs]
        return Cut(audio, (first - lo) / FRAMES_PER_S, regions, (last - first) / FRAMES_PER_S)
