"""Helpers for the video tests: where the real clip and weights are, and writing small videos.

    write_video(path, frames (n, H, W, 3) uint8, fps=25, audio=None, times_s=None)
    patch = skip_without_frontend(tmp)   # pytest.skip unless the clip and weights are here;
    ...; patch.undo()                    # a MonkeyPatch that may point $AVDIAR_WEIGHTS at tmp
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "real"
CLIP = REAL / "av" / "interview.mp4"
ASD_WEIGHTS = REAL / "light-asd" / "pretrain_AVA_CVPR.model"
# two faces of the clip's frame 0, (x1, y1, x2, y2) in its 1280 x 720 pixels (MTCNN's boxes)
CLIP_FACES = ((324.2, 139.2, 492.4, 367.0), (791.1, 70.6, 977.3, 309.2))


def weights_available(tmp_root: Path, patch: pytest.MonkeyPatch) -> bool:
    """MTCNN weights in the cache, or extracted under tmp_root (and $AVDIAR_WEIGHTS pointed
    there through `patch`) from a facenet-pytorch wheel already in $AVDIAR_WHEELS; never
    downloads."""
    from core.weights import KNOWN, cached, fetch_from_wheel

    names = ["mtcnn/pnet", "mtcnn/rnet", "mtcnn/onet"]
    if all(cached(n) for n in names):
        return True
    wheels = os.environ.get("AVDIAR_WHEELS")
    if wheels and any(Path(wheels).glob("facenet_pytorch-2.6.0-*.whl")):
        fetch_from_wheel([KNOWN[n] for n in names], root=tmp_root, wheel_dir=Path(wheels),
                         log=lambda line: None)
        patch.setenv("AVDIAR_WEIGHTS", str(tmp_root))
        return True
    return False


def skip_without_frontend(tmp_root: Path) -> pytest.MonkeyPatch:
    """Skip unless the clip, Light-ASD's and MTCNN's weights are at hand; the returned
    MonkeyPatch (undo it at teardown) may have set $AVDIAR_WEIGHTS."""
    if not CLIP.is_file() or not ASD_WEIGHTS.is_file():
        pytest.skip("../shared/real (interview.mp4, Light-ASD weights) absent")
    patch = pytest.MonkeyPatch()
    if not weights_available(tmp_root, patch):
        pytest.skip("MTCNN weights neither cached nor in $AVDIAR_WHEELS")
    return patch


def write_video(path: Path, frames: np.ndarray, fps: int = 25,
                audio: Optional[np.ndarray] = None, sample_rate: int = 16000,
                times_s: Optional[Sequence[float]] = None) -> Path:
    """An H.264 mp4 of `frames` (n, H, W, 3) uint8 (even H, W), frame i at times_s[i] (default
    i / fps), with an AAC track of `audio` (samples,) float32 when given."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.options = {"bf": "0"}   # no B-frames: any frame times
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=sample_rate)
            astream.layout = "mono"
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = int(round((times_s[i] if times_s is not None else i / fps) * 1000))
            frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if astream is not None:
            samples = np.asarray(audio, np.float32)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = 0
            for packet in astream.encode(frame):
                container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return path


def clip_faces(size: int = 96) -> np.ndarray:
    """(2, size, size, 3) uint8 RGB crops of the clip's two faces (frame 0)."""
    import av
    import torch
    import torch.nn.functional as F

    with av.open(str(CLIP)) as container:
        image = next(container.decode(video=0)).to_ndarray(format="rgb24")
    crops = []
    for x1, y1, x2, y2 in CLIP_FACES:
        margin = 0.25 * (x2 - x1)
        part = image[int(y1 - margin):int(y2 + margin), int(x1 - margin):int(x2 + margin)]
        tensor = torch.from_numpy(np.ascontiguousarray(part)).permute(2, 0, 1)[None].float()
        crops.append(F.interpolate(tensor, size=(size, size), mode="area")[0].permute(1, 2, 0))
    return np.stack([c.round().clamp(0, 255).byte().numpy() for c in crops])
