"""The video front end: a video file -> per-frame face embeddings {uri}.npy for --video-dir.

    frontend = VideoFrontend(FrontendSettings(faces=3))
    result = frontend.process("talk.mp4")                 # FrontendResult
    write_outputs(result, out_dir, "talk", wav_path=out_dir / "talk.wav")

Steps: decode at 25 fps (data.video_io); MTCNN (core.mtcnn) on every `detect_every`-th
frame, scaled down to `detect_height` pixels; detections with probability >=
`min_probability` linked into tracks by IoU (data.face_tracks), or tracks given by the
caller (e.g. AVA's boxes); the `faces` most important tracks get slots; a second decoding
pass crops each slotted face (data.face_crops) and Light-ASD's visual encoder
(core.light_asd) turns it into 128 numbers per frame; speaking scores from Light-ASD's
audio-visual head on the MFCC of the file's own audio (visual head without audio).

Outputs (`write_outputs`, each file written to a temporary name and renamed, the .npy last):

    {uri}.npy            (frames, faces * 128) float32: slot k in columns k*128..(k+1)*128;
                         zeros in a slot without a face; NaN rows where no slot has one
                         (data.video masks those frames)
    {uri}.speaking.npy   (frames, faces) float32 speaking log-odds per slot, NaN without a face
    {uri}.boxes.npy      (frames, faces, 4) float32 face boxes (x1, y1, x2, y2) in pixels of
                         the video, NaN without a face
    {uri}.tracks.json    settings, per-track spans, slots and mean scores, warnings
    {uri}.wav            16 kHz mono PCM-16 (optional; none when the file has no audio)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from core.constants import SAMPLE_RATE
from core.light_asd import EMBED_DIM, MFCC_PER_FRAME, LightASD, load_light_asd
from core.mfcc import mfcc as compute_mfcc
from data.face_crops import TrackEmbedder, crop_faces, speaking_scores
from data.face_tracks import FaceTrack, TrackSettings, assign_slots, link_detections
from data.video_io import (
    VideoError,
    frame_times,
    frames_at_fps,
    is_variable_rate,
    probe,
    read_audio,
)

FPS = 25.0



@dataclass
class FrontendSettings:
    """Settings of the front end; sizes in pixels, spans in frames at 25 fps."""

    faces: int = 3                  # slots per frame (esize = 128 * faces)
    detect_every: int = 5           # run the detector on every k-th frame
    detect_height: int = 360        # detection image height (frames are only scaled down)
    min_face: float = 20.0          # smallest face the detector looks for, detection pixels
    min_probability: float = 0.9    # detections below are ignored
    tracks: Optional[TrackSettings] = None   # default: gaps of 2 k, ends held k // 2 frames
    chunk: int = 64                 # frames per visual-encoder pass

    def __post_init__(self):
        if self.faces < 1 or self.detect_every < 1:
            raise ValueError(f"need --faces >= 1 and --detect-every >= 1, got {self.faces} "
                             f"and {self.detect_every}")
        if self.tracks is None:
            self.tracks = TrackSettings(max_gap=2 * self.detect_every,
                                        extend=self.detect_every // 2)


@dataclass
class FrontendResult:
    video: np.ndarray               # (frames, faces * 128) float32, NaN rows = no face
    speaking: np.ndarray            # (frames, faces) float32, NaN = no face in the slot
    boxes: np.ndarray               # (frames, faces, 4) float32 pixels, NaN = no face
    waveform: Optional[np.ndarray]  # (samples,) float32 16 kHz, None without audio
    info: dict                      # what goes into {uri}.tracks.json
    warnings: List[str]


Log = Callable[[str], None]


class VideoFrontend:
    """Detector and Light-ASD loaded once, applied to any number of files."""

    def __init__(self, settings: Optional[FrontendSettings] = None, asd_weights=None,
                 device: str = "cpu", detector=None, asd: Optional[LightASD] = None):
        self.settings = settings or FrontendSettings()
        self.device = torch.device(device)
        self.asd = asd if asd is not None else load_light_asd(asd_weights, device=self.device)
        self.asd_weights = str(asd_weights) if asd_weights else "default"
        self._detector = detector

    @property
    def detector(self):
        if self._detector is None:
            from core.mtcnn import load_mtcnn
            self._detector = load_mtcnn(min_face_size=self.settings.min_face).to(self.device)
        return self._detector

    def process(self, path, start_s: float = 0.0, end_s: Optional[float] = None,
                tracks: Optional[Sequence[FaceTrack]] = None,
                log: Optional[Log] = None) -> FrontendResult:
        """Everything for `path` from `start_s` to `end_s` (default: its end); `tracks`
        (frame 0 = start_s) replace the detector. VideoError for unusable files."""
        path = str(path)
        settings, warnings = self.settings, []
        info = probe(path, FPS)
        end = info.duration_s if end_s is None else min(end_s, info.duration_s)
        num_frames = int(round((end - start_s) * FPS))
        if num_frames <= 0:
            raise VideoError(f"{path}: no video frames between {start_s:.2f} and {end:.2f} s")
        times = frame_times(path)
        if is_variable_rate(times):
            steps = np.diff(times) * 1000
            warnings.append(f"{path}: variable frame rate ({steps.min():.0f}-{steps.max():.0f} ms "
                            f"between frames): resampled to 25 fps, nearest frame")
        waveform = read_audio(path, SAMPLE_RATE, start_s, end_s)
        if waveform is None:
            warnings.append(f"{path}: no audio stream: speaking scores from the faces alone, "
                            "no .wav written")
        if tracks is None:
            tracks = link_detections(self._detect(path, start_s, num_frames), num_frames,
                                     settings.tracks)
            source = "mtcnn"
        else:
            tracks = list(tracks)
            source = "given"
        slots = assign_slots(tracks, settings.faces)
        kept = [t for t, s in zip(tracks, slots) if s is not None]
        if not tracks:
            warnings.append(f"{path}: no face found: every frame is masked")
        elif len(kept) < len(tracks):
            warnings.append(f"{path}: {len(tracks)} face tracks, {len(tracks) - len(kept)} left "
                            f"out (more than --faces {settings.faces} at once)")
        embeddings = self._embed(path, start_s, num_frames, tracks, slots)
        mfcc = None if waveform is None else _mfcc_rows(waveform, num_frames)
        video = np.zeros((num_frames, settings.faces * EMBED_DIM), np.float32)
        speaking = np.full((num_frames, settings.faces), np.nan, np.float32)
        boxes = np.full((num_frames, settings.faces, 4), np.nan, np.float32)
        records = []
        for index, (track, slot) in enumerate(zip(tracks, slots)):
            record = {"id": index, "label": track.label, "slot": slot, "first_frame": track.first,
                      "last_frame": track.last, "detected_frames": int(track.detected.sum()),
                      "mean_box": [round(float(v), 1) for v in track.boxes.mean(axis=0)]}
            if slot is not None:
                rows = embeddings[index]
                span = slice(track.first, track.first + len(rows))
                video[span, slot * EMBED_DIM:(slot + 1) * EMBED_DIM] = rows
                part = None if mfcc is None else mfcc[track.first * MFCC_PER_FRAME:
                                                      (track.last + 1) * MFCC_PER_FRAME]
                scores = speaking_scores(self.asd, rows, part)
                speaking[span, slot] = scores
                boxes[span, slot] = track.boxes[:len(rows)]
                record.update(mean_speaking=round(float(scores.mean()), 3),
                              speaking_fraction=round(float((scores > 0).mean()), 3))
            records.append(record)
        video[np.isnan(speaking).all(axis=1)] = np.nan
        meta = {"source": path, "start_s": start_s, "frames": num_frames, "fps": FPS,
                "faces": settings.faces, "esize": settings.faces * EMBED_DIM,
                "tracks_from": source, "asd_weights": self.asd_weights,
                "audio_scores": waveform is not None,
                "frames_with_face": int((~np.isnan(speaking).all(axis=1)).sum()),
                "settings": asdict(settings), "tracks": records, "warnings": warnings}
        if log is not None:
            for line in warnings:
                log(f"warning: {line}")
        return FrontendResult(video, speaking, boxes, waveform, meta, warnings)

    @torch.no_grad()
    def _detect(self, path: str, start_s: float,
                num_frames: int) -> List[Tuple[int, np.ndarray]]:
        """[(frame, boxes (n, 5) in full-frame pixels)] on every detect_every-th frame."""
        settings, found = self.settings, []
        for j, frame in frames_at_fps(path, FPS, start_s, num_frames=num_frames):
            if j % settings.detect_every:
                continue
            scale = min(1.0, settings.detect_height / frame.height)
            width = max(int(round(frame.width * scale / 2)) * 2, 2)
            height = max(int(round(frame.height * scale / 2)) * 2, 2)
            image = frame.to_ndarray(format="rgb24", width=width, height=height)
            boxes = self.detector.detect(image)
            boxes = boxes[boxes[:, 4] >= settings.min_probability]
            boxes[:, [0, 2]] *= frame.width / width
            boxes[:, [1, 3]] *= frame.height / height
            found.append((j, boxes))
        return found

    def _embed(self, path: str, start_s: float, num_frames: int, tracks: Sequence[FaceTrack],
               slots: Sequence[Optional[int]]) -> Dict[int, np.ndarray]:
        """{track index: (frames, 128)} for the slotted tracks, from a second decoding pass."""
        active = [i for i, s in enumerate(slots) if s is not None]
        if not active:
            return {}
        embedder = TrackEmbedder(self.asd, self.settings.chunk, self.device)
        starts: Dict[int, List[int]] = {}
        for i in active:
            starts.setdefault(tracks[i].first, []).append(i)
        live: List[int] = []
        last_needed = max(tracks[i].last for i in active)
        for j, frame in frames_at_fps(path, FPS, start_s, num_frames=num_frames):
            if j > last_needed:
                break
            live += starts.get(j, [])
            if not live:
                continue
            grey = frame.to_ndarray(format="gray")
            boxes = np.stack([tracks[i].boxes[j - tracks[i].first] for i in live])
            for i, crop in zip(live, crop_faces(grey, boxes)):
                embedder.push(i, crop)
            ended = [i for i in live if tracks[i].last == j]
            for i in ended:
                embedder.finish(i)
            live = [i for i in live if tracks[i].last != j]
        for i in live:
            embedder.finish(i)
        return {i: embedder.result(i) for i in active}


def _mfcc_rows(waveform: np.ndarray, num_frames: int) -> np.ndarray:
    """(4 num_frames, 13) MFCC rows for the clip, the last row repeated if audio is short."""
    rows = compute_mfcc(torch.from_numpy(waveform)).numpy()
    wanted = num_frames * MFCC_PER_FRAME
    if len(rows) < wanted:
        rows = np.concatenate([rows, np.repeat(rows[-1:], wanted - len(rows), axis=0)])
    return rows[:wanted]


def _atomic(path: Path, write: Callable[[object], None]) -> Path:
    partial = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(partial, "wb") as handle:
            write(handle)
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()
    return path


def write_outputs(result: FrontendResult, out_dir, uri: str,
                  wav_path: Optional[Path] = None) -> Path:
    """Write {uri}.speaking.npy, {uri}.boxes.npy, {uri}.tracks.json, the wav (when asked and
    there is audio), then {uri}.npy, each atomically; return the .npy's path."""
    import soundfile as sf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if wav_path is not None and result.waveform is not None:
        Path(wav_path).parent.mkdir(parents=True, exist_ok=True)
        _atomic(Path(wav_path), lambda h: sf.write(h, result.waveform, SAMPLE_RATE,
                                                   format="WAV", subtype="PCM_16"))
    _atomic(out / f"{uri}.speaking.npy", lambda h: np.save(h, result.speaking))
    _atomic(out / f"{uri}.boxes.npy", lambda h: np.save(h, result.boxes))
    text = json.dumps({"uri": uri, **result.info}, indent=1)
    _atomic(out / f"{uri}.tracks.json", lambda h: h.write(text.encode("utf-8")))
    return _atomic(out / f"{uri}.npy", lambda h: np.save(h, result.video))
