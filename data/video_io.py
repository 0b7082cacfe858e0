"""Reading video files with PyAV (FFmpeg bundled in its wheel): frames at 25 fps, audio at 16 kHz.

    info = probe(path)                                     # VideoInfo, or VideoError
    for index, frame in frames_at_fps(path, 25.0, start_s, end_s):   # av.VideoFrame
        grey = frame.to_ndarray(format="gray")             # (H, W) uint8
    waveform = read_audio(path, 16000, start_s, end_s)     # (samples,) float32 mono, or None

Time 0 is the first video frame's time (the video stream's start), or `start_s` seconds
after it. Output frame j stands for time start_s + j / fps and is the decoded frame nearest
to it, so any source rate (and a variable one) comes out at `fps`; a source frame is
repeated or dropped as needed. `probe` counts output frames as round(duration * fps) with
the duration of the video stream. Every failure is a `VideoError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, List, Optional, Tuple

import numpy as np

from data.index import DataError


class VideoError(DataError):
    """A video file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` finds. Times in seconds; `num_frames` counts frames at 25 fps."""

    path: str
    width: int
    height: int
    source_fps: float          # the stream's average frame rate
    duration_s: float          # of the video stream
    num_frames: int            # round(duration_s * 25)
    has_audio: bool
    audio_rate: int            # Hz, 0 without audio
    codec: str


def _open(path):
    import av

    try:
        return av.open(str(path))
    except FileNotFoundError:
        raise VideoError(f"{path}: no such file") from None
    except Exception as error:  # FFmpeg's errors: not a media file, truncated header, ...
        raise VideoError(f"{path}: not a readable video file ({_reason(error)})") from None


def _reason(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]


def _stream_start_s(stream) -> float:
    if stream.start_time is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def probe(path, fps: float = 25.0) -> VideoInfo:
    """Header facts of `path`; VideoError when it cannot be opened or has no video stream."""
    with _open(path) as container:
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
            raise VideoError(f"{path}: no video stream (streams: {kinds})")
        video = container.streams.video[0]
        if video.duration is not None and video.time_base is not None:
            duration = float(video.duration * video.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = 0.0
        rate = video.average_rate or video.guessed_rate or Fraction(0)
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(str(path), int(video.codec_context.width),
                         int(video.codec_context.height), float(rate), duration,
                         int(round(duration * fps)), audio is not None,
                         int(audio.rate) if audio is not None else 0, video.codec_context.name)


def frames_at_fps(path, fps: float = 25.0, start_s: float = 0.0,
                  end_s: Optional[float] = None,
                  num_frames: Optional[int] = None) -> Iterator[Tuple[int, "object"]]:
    """(j, av.VideoFrame) for output frames j = 0, 1, ... at `fps` from `start_s` to `end_s`
    (or `num_frames` frames; default: to the end of the stream), each the decoded frame
    nearest to start_s + j / fps. Frames past the last decoded one repeat it when
    `num_frames` asks for more. VideoError when decoding fails."""
    with _open(path) as container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        origin = _stream_start_s(stream)
        if end_s is not None and num_frames is None:
            num_frames = int(round((end_s - start_s) * fps))
        if start_s > 0:
            container.seek(int((origin + start_s) / stream.time_base), stream=stream,
                           backward=True, any_frame=False)
        j, previous = 0, None          # previous: (time, frame) of the last decoded frame
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * stream.time_base) - origin - start_s
                if previous is not None:  # outputs nearer to the previous frame than to this
                    while (num_frames is None or j < num_frames) and \
                            j / fps < 0.5 * (previous[0] + t):
                        yield j, previous[1]
                        j += 1
                if num_frames is not None and j >= num_frames:
                    return
                previous = (t, frame)
        except Exception as error:
            raise VideoError(f"{path}: decoding failed at {start_s + j / fps:.2f} s "
                             f"({_reason(error)})") from None
        if previous is None:
            raise VideoError(f"{path}: no decodable video frame")
        while (j < num_frames) if num_frames is not None else (j / fps <= previous[0] + 0.5 / fps):
            yield j, previous[1]
            j += 1


def frame_times(path) -> np.ndarray:
    """(n,) float64 presentation times in seconds of the video stream's frames, from the
    packets (no decoding), sorted; for spotting a variable frame rate."""
    with _open(path) as container:
        stream = container.streams.video[0]
        times: List[float] = []
        try:
            for packet in container.demux(stream):
                if packet.pts is not None:
                    times.append(float(packet.pts * stream.time_base))
        except Exception as error:
            raise VideoError(f"{path}: unreadable packets ({_reason(error)})") from None
    return np.sort(np.array(times, dtype=np.float64))


def is_variable_rate(times: np.ndarray, tolerance: float = 0.1) -> bool:
    """True when frame intervals differ from their median by more than `tolerance` (relative)
    for more than 1 % of the frames."""
    if len(times) < 3:
        return False
    steps = np.diff(times)
    median = float(np.median(steps))
    if median <= 0:
        return True
    return float(np.mean(np.abs(steps - median) > tolerance * median)) > 0.01


def read_audio(path, sample_rate: int = 16000, start_s: float = 0.0,
               end_s: Optional[float] = None) -> Optional[np.ndarray]:
    """(samples,) float32 mono at `sample_rate` from `start_s` to `end_s` (video time, see
    the module docstring), zero-padded where the audio starts late or ends early; None when
    the file has no audio stream. VideoError when the audio cannot be decoded."""
    import av

    with _open(path) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        origin = (_stream_start_s(container.streams.video[0]) if container.streams.video
                  else _stream_start_s(stream))
        audio_start = _stream_start_s(stream) - origin       # where decoded sample 0 lies
        if start_s > 0:
            container.seek(int((origin + start_s) / stream.time_base), stream=stream,
                           backward=True, any_frame=False)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks, first_t = [], None
        stop = None if end_s is None else end_s + 1.0
        try:
            for frame in container.decode(stream):
                if first_t is None:
                    first_t = (float(frame.pts * stream.time_base) - origin
                               if frame.pts is not None else audio_start)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                if stop is not None and frame.pts is not None and \
                        float(frame.pts * stream.time_base) - origin > stop:
                    break
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except Exception as error:
            raise VideoError(f"{path}: audio decoding failed ({_reason(error)})") from None
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    first_t = audio_start if first_t is None else first_t
    lead = int(round((first_t - start_s) * sample_rate))  # samples before the first decoded one
    if lead > 0:
        samples = np.concatenate([np.zeros(lead, np.float32), samples])
    elif lead < 0:
        samples = samples[-lead:]
    if end_s is not None:
        wanted = int(round((end_s - start_s) * sample_rate))
        samples = samples[:wanted]
        if len(samples) < wanted:
            samples = np.concatenate([samples, np.zeros(wanted - len(samples), np.float32)])
    return samples

