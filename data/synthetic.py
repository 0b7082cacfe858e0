"""The synthetic audio-visual database: conversations whose speakers only video tells apart.

`generate_database(out_dir, ...)` writes, for splits train / development / test:

    audio/{uri}.wav           16 kHz mono PCM-16
    video/{uri}.npy           (round(duration * 25), esize) float16, NaN rows = missing frames
    lists/{split}.lst         one uri per line
    rttm/{split}.rttm         speech turns
    uem/{split}.uem           annotated regions
    database.yml              protocol Synthetic.SpeakerDiarization.AV (paths relative to it)
    synthetic.json            the generation settings (esize, fps, seed, sizes), the speech
                              source ("speech_source") and every split's speakers

Generative model (everything drawn from `numpy.random.default_rng` streams seeded by a
stable hash of (seed, split, file index), so the output depends on the seed only):

Speakers. Every split has its own pool of speakers (no speaker is shared across splits):
`pairs` look-alike pairs and `singles` other speakers (4 and 4 by default; `run.py synth
--pairs P --singles Q`: with many files, a bigger pool gives more distinct faces and voices,
so that a model has fewer training faces to memorise). A speaker has a voice
(`data.voice.Voice`: pitch, formants, rate, brightness, loudness) and a face-identity
vector (unit norm). The two members of a look-alike pair share their voice parameters
(`look_alike_spread` = 0, the default: their speech differs only in prosody and words) but
have independent faces. `look_alike_spread` = 0.01 (the default until 2026-11-26) puts
their voices 1 % apart in every parameter instead; that was meant to make audio alone
unable to tell them apart, but a small audio model trained for 1000 steps largely learns
to (README, the demo section).

Speech (`speech`). "synthetic" (the default): the voices of data/voice.py, as above. A
LibriSpeech folder (data/real_speech.py; `run.py synth` takes ../shared/real/librispeech
when it is there): every speaker is a LibriSpeech reader instead, train and development
from train-clean-100 (split between them by reader, the same split for every seed), test
from test-other; a turn is that reader's next stretch of read speech, cut at low-energy
frames, its reference the speech an energy VAD finds in it (pauses of 0.3 s or more split
it). Pairs are two readers of the same sex with the closest long-term spectra; pool sizes
default to the whole split (a third of it in pairs); `look_alike_spread` does not apply.
Faces, video, turn-taking and noise are the same for both sources.

Conversations. A file has 2 to 5 speakers (probabilities .35/.35/.2/.1), built pair
first: a 2-speaker file is a look-alike pair 80 % of the time, a 3-speaker file holds one
pair, a 4- or 5-speaker file two pairs. Turns follow each other with pauses (.05 to .8 s,
sometimes 1 to 3 s) or overlap the previous turn (25 %, .2 to 1 s; never more than two
speakers at once). The next speaker is the current speaker's look-alike partner 45 % of
the time, so that both members of a pair talk within the same 10 s chunk most of the
time: that is where audio-only segmentation confuses them and video helps. Turns last
.4 to 6 s (gamma, mean about 2.4 s). Background noise (low-passed white noise) at an SNR
of 15 to 30 dB. The UEM covers the whole file, except in the middle file of each split,
where a 20 % gap in the middle is left unannotated.

Video (25 fps, `esize` dims, data/synthetic_video.py): up to 4 face slots a frame, each a
speaker's face-identity vector scaled by their mouth activity, which follows their own
speech energy; speakers go off screen, some frames are missing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile as sf

from data.protocol import database_yaml
from data.real_speech import Reading, RealVoice, load_readers, make_pool
from data.synthetic_video import SLOTS, VIDEO_FPS, make_video
from data.voice import SAMPLE_RATE, Voice, random_voice, synthesize

SPLITS = ("train", "development", "test")
PROTOCOL = "Synthetic.SpeakerDiarization.AV"
LOOK_ALIKE_SPREAD = 0.0  # look-alike voices: the same parameters (0.01 until 2026-11-26)
_PREFIX = {"train": "tr", "development": "dv", "test": "ts"}


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: label, voice (synthetic or a LibriSpeech reader), face identity
    (w-1,) float32, look-alike partner."""

    label: str
    voice: Union[Voice, RealVoice]
    face: np.ndarray
    partner: Optional[str]


def stable_rng(*parts) -> np.random.Generator:
    """A numpy Generator seeded by a stable hash of `parts` (same on every machine/run)."""
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def make_speakers(rng: np.random.Generator, prefix: str, face_dims: int, pairs: int = 4,
                  singles: int = 4, spread: float = LOOK_ALIKE_SPREAD) -> List[Speaker]:
    """`pairs` look-alike pairs (voice parameters within `spread`, relative) then `singles`
    speakers, labelled f"{prefix}_spk{i:02d}"."""
    speakers: List[Speaker] = []

    def face() -> np.ndarray:
        vector = rng.normal(size=face_dims)
        return (vector / np.linalg.norm(vector)).astype(np.float32)

    for p in range(pairs):
        voice = random_voice(rng)
        a, b = f"{prefix}_spk{2 * p:02d}", f"{prefix}_spk{2 * p + 1:02d}"
        speakers.append(Speaker(a, voice, face(), b))
        speakers.append(Speaker(b, voice.look_alike(rng, spread), face(), a))
    for s in range(singles):
        speakers.append(Speaker(f"{prefix}_spk{2 * pairs + s:02d}", random_voice(rng), face(),
                                None))
    return speakers


def make_real_speakers(rng: np.random.Generator, prefix: str, face_dims: int, corpus_dir,
                       split: str, pairs: Optional[int], singles: Optional[int]) -> List[Speaker]:
    """LibriSpeech readers of `split` as speakers labelled f"{prefix}_ls{reader id}", look-alike
    pairs first (data.real_speech.make_pool), each with a loudness and a face."""
    pool = make_pool(rng, load_readers(corpus_dir, split), pairs, singles)
    labels = [f"{prefix}_ls{reader.reader_id}" for reader, _ in pool]
    speakers = []
    for (reader, partner), label in zip(pool, labels):
        face = rng.normal(size=face_dims)
        speakers.append(Speaker(label, RealVoice(reader, float(rng.uniform(0.05, 0.1))),
                                (face / np.linalg.norm(face)).astype(np.float32),
                                None if partner is None else labels[partner]))
    return speakers


def pick_speakers(rng: np.random.Generator, speakers: Sequence[Speaker]) -> List[Speaker]:
    """2 to 5 speakers for one file, look-alike pairs first (see the module docstring)."""
    count = int(rng.choice([2, 3, 4, 5], p=[0.35, 0.35, 0.2, 0.1]))
    paired = [s for s in speakers if s.partner is not None]
    singles = [s for s in speakers if s.partner is None]
    num_pairs = {2: int(rng.random() < 0.8), 3: 1, 4: 2, 5: 2}[count]
    num_pairs = min(num_pairs, len(paired) // 2)
    chosen: List[Speaker] = []
    for p in rng.permutation(len(paired) // 2)[:num_pairs]:
        chosen += [paired[2 * p], paired[2 * p + 1]]
    others = [s for s in list(singles) + paired if s not in chosen]
    for k in rng.permutation(len(others))[: count - len(chosen)]:
        chosen.append(others[k])
    return chosen


def make_turns(rng: np.random.Generator, speakers: Sequence[Speaker], duration_s: float,
               realise: Optional[Callable[[int, float, float, float], float]] = None
               ) -> List[Tuple[float, float, int]]:
    """Turns (start_s, end_s, speaker position) over `duration_s`; at most 2 at once.

    realise(position, start_s, wanted_s, max_s), when given, places a turn's speech and
    returns its length in seconds (<= max_s), which then stands for the drawn length."""
    weights = rng.dirichlet(np.full(len(speakers), 2.0))
    labels = [s.label for s in speakers]
    turns: List[Tuple[float, float, int]] = []
    current = int(rng.choice(len(speakers), p=weights))
    t = rng.uniform(0.2, 1.0)
    while t < duration_s - 0.6:
        length = float(np.clip(rng.gamma(2.0, 1.0) + 0.4, 0.4, 6.0))
        end = min(t + length, duration_s - 0.1)
        if realise is not None:
            end = t + realise(current, t, length, duration_s - 0.1 - t)
        turns.append((t, end, current))
        partner = speakers[current].partner
        if partner in labels and rng.random() < 0.45:
            nxt = labels.index(partner)
        else:
            p = weights.copy()
            p[current] = 0.0
            nxt = int(rng.choice(len(speakers), p=p / p.sum()))
        r = rng.random()
        if r < 0.25:
            gap = -rng.uniform(0.2, max(0.25, min(1.0, 0.5 * (end - t))))
        elif r < 0.35:
            gap = rng.uniform(1.0, 3.0)
        else:
            gap = rng.uniform(0.05, 0.8)
        t = end + gap
        if len(turns) >= 2:  # never three speakers at once
            t = max(t, turns[-2][1] + 0.05)
        t = max(t, turns[-1][0] + 0.3)
        current = nxt
    return turns


def _real_turns(rng: np.random.Generator, chosen: Sequence[Speaker], duration_s: float,
                tracks: np.ndarray) -> List[Tuple[float, float, int]]:
    """Turns of LibriSpeech speech added into `tracks` (speakers, samples); returns the
    speech regions (start_s, end_s, speaker position) that the energy VAD found in them."""
    readings: Dict[int, Reading] = {}
    regions: List[Tuple[float, float, int]] = []

    def realise(k: int, start_s: float, wanted_s: float, max_s: float) -> float:
        if k not in readings:
            readings[k] = Reading(chosen[k].voice, rng)
        cut = readings[k].next_turn(wanted_s, max_s)
        lo = int(round((start_s - cut.lead_s) * SAMPLE_RATE))
        audio = cut.audio[max(-lo, 0):tracks.shape[1] - lo]
        tracks[k, max(lo, 0):max(lo, 0) + len(audio)] += audio
        regions.extend((start_s + a, min(start_s + b, duration_s), k) for a, b in cut.regions)
        return cut.speech_s

    make_turns(rng, chosen, duration_s, realise)
    return regions


def make_file(seed: int, split: str, index: int, uri: str, speakers: Sequence[Speaker],
              duration_s: float, esize: int) -> Dict:
    """Everything of one file: waveform (samples,), video (frames, esize), turns, labels."""
    rng = stable_rng(seed, split, index)
    chosen = pick_speakers(rng, speakers)
    num_samples = int(round(duration_s * SAMPLE_RATE))
    tracks = np.zeros((len(chosen), num_samples), dtype=np.float32)
    if isinstance(chosen[0].voice, RealVoice):
        turns = _real_turns(rng, chosen, duration_s, tracks)
    else:
        turns = make_turns(rng, chosen, duration_s)
        for start, end, s in turns:
            lo = int(round(start * SAMPLE_RATE))
            audio = synthesize(chosen[s].voice, end - start, rng)[: num_samples - lo]
            tracks[s, lo:lo + len(audio)] += audio
    mix = tracks.sum(axis=0)
    speech_rms = float(np.sqrt(np.mean(mix[np.abs(mix) > 0] ** 2))) if np.any(mix) else 0.05
    noise = rng.normal(0.0, 1.0, size=num_samples)
    noise = np.convolve(noise, np.ones(4) / 2.0, mode="same")
    noise *= speech_rms * 10 ** (-rng.uniform(15.0, 30.0) / 20.0) / (noise.std() + 1e-8)
    mix = np.clip(mix + noise.astype(np.float32), -1.0, 1.0)
    num_frames = int(round(duration_s * VIDEO_FPS))
    video = make_video(rng, [s.face for s in chosen], tracks, esize, num_frames)
    return {"uri": uri, "waveform": mix, "video": video,
            "turns": [(s, e, chosen[k].label) for s, e, k in turns]}


def _describe(speaker: Speaker) -> Dict:
    """A speaker as synthetic.json lists it."""
    entry = {"label": speaker.label, "partner": speaker.partner}
    if isinstance(speaker.voice, RealVoice):
        reader = speaker.voice.reader
        entry.update(librispeech_id=reader.reader_id, subset=reader.subset, sex=reader.sex)
    return entry


def generate_database(out_dir, *, files: int = 6, minutes: float = 4.0,
                      eval_minutes: Optional[float] = None, esize: int = 128, seed: int = 0,
                      uri_format: str = "{prefix}{index:03d}", pairs: Optional[int] = None,
                      singles: Optional[int] = None,
                      look_alike_spread: float = LOOK_ALIKE_SPREAD, speech: str = "synthetic",
                      progress: bool = False) -> Path:
    """Write the synthetic database into `out_dir`; return the path of its database.yml.

    files: files per split; minutes: minutes of audio in the train split (shared equally by
    its files); eval_minutes: the same for development and test (default: `minutes`);
    esize: video embedding size (>= 8); uri_format: formatted with prefix ("tr", "dv",
    "ts"), split and index (non-ASCII allowed); pairs, singles: speaker pool of each split
    (None: 4 each with synthetic voices, the whole split with LibriSpeech); look_alike_spread:
    how far apart (relative, every voice parameter) look-alike synthetic voices are, 0 = the
    same voice parameters (only prosody and the words differ); speech: "synthetic" or a
    LibriSpeech folder (data.real_speech.resolve_speech).
    """
    real = speech != "synthetic"
    asked = {"pairs": pairs, "singles": singles}  # recorded as given (None = the default)
    if not real:
        pairs, singles = (4 if pairs is None else pairs), (4 if singles is None else singles)
    if esize < 2 * SLOTS:
        raise ValueError(f"synthetic video needs --esize >= {2 * SLOTS}, got {esize}")
    if (pairs or 0) < 0 or (singles or 0) < 0 or (
            pairs is not None and singles is not None and 2 * pairs + singles < 2):
        raise ValueError(f"need --pairs >= 0, --singles >= 0 and at least 2 speakers per "
                         f"split, got {pairs} pairs and {singles} singles")
    if not 0.0 <= look_alike_spread < 1.0:
        raise ValueError(f"need 0 <= --look-alike-spread < 1, got {look_alike_spread}")
    if files < 1 or minutes <= 0:
        raise ValueError(f"need --files >= 1 and --minutes > 0, got {files} and {minutes}")
    out = Path(out_dir)
    for sub in ("audio", "video", "lists", "rttm", "uem"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    eval_minutes = minutes if eval_minutes is None else eval_minutes
    width = esize // SLOTS
    jobs = [(split, i) for split in SPLITS for i in range(files)]
    pools: Dict[str, List[Dict]] = {}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), desc="synth", unit="file")
    for split in SPLITS:
        prefix = _PREFIX[split]
        rng = stable_rng(seed, split, "speakers")
        if real:
            speakers = make_real_speakers(rng, prefix, width - 1, speech, split, pairs, singles)
            if len(speakers) < 2:
                raise ValueError(f"{speech}: fewer than 2 LibriSpeech readers for {split}")
        else:
            speakers = make_speakers(rng, prefix, width - 1, pairs, singles, look_alike_spread)
        pools[split] = [_describe(s) for s in speakers]
        duration_s = 60.0 * (minutes if split == "train" else eval_minutes) / files
        uris, rttm, uem = [], [], []
        for i in range(files):
            uri = uri_format.format(prefix=prefix, split=split, index=i)
            item = make_file(seed, split, i, uri, speakers, duration_s, esize)
            sf.write(out / "audio" / f"{uri}.wav", item["waveform"], SAMPLE_RATE,
                     subtype="PCM_16")
            np.save(out / "video" / f"{uri}.npy", item["video"].astype(np.float16))
            uris.append(uri)
            regions = [(0.0, duration_s)]
            if files > 1 and i == files // 2:  # an unannotated gap in the middle
                regions = [(0.0, 0.4 * duration_s), (0.6 * duration_s, duration_s)]
            uem += [f"{uri} 1 {lo:.3f} {hi:.3f}" for lo, hi in regions]
            for start, end, label in item["turns"]:
                for lo, hi in regions:  # turns cropped to the annotated regions
                    s, e = round(max(start, lo), 3), round(min(end, hi), 3)
                    if e - s > 0.001:
                        rttm.append(f"SPEAKER {uri} 1 {s:.3f} {e - s:.3f} <NA> <NA> "
                                    f"{label} <NA> <NA>")
            if bar is not None:
                bar.update(1)
        for path, lines in (("lists", uris), ("rttm", rttm), ("uem", uem)):
            ext = {"lists": "lst", "rttm": "rttm", "uem": "uem"}[path]
            (out / path / f"{split}.{ext}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if bar is not None:
        bar.close()
    yml = out / "database.yml"
    yml.write_text(database_yaml(PROTOCOL, SPLITS), encoding="utf-8")
    settings = {"protocol": PROTOCOL, "files": files, "minutes": minutes,
                "eval_minutes": eval_minutes, "esize": esize, "video_fps": VIDEO_FPS,
                "seed": seed, "slots": SLOTS, **asked,
                "look_alike_spread": look_alike_spread, "speech": speech,
                "speech_source": "librispeech" if real else "synthetic", "speakers": pools}
    (out / "synthetic.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
    return yml
