"""MTCNN face detector (Zhang et al. 2016) in plain PyTorch, with facenet-pytorch's weights.

    detector = load_mtcnn()                      # P/R/O-Net from core.weights ("mtcnn/pnet", ...)
    boxes = detector.detect(image)               # image (H, W, 3) uint8 RGB -> (n, 5) float32

A box is (x1, y1, x2, y2, probability) in pixels of `image`. Three cascaded networks:
P-Net slides over an image pyramid (scales 12 / min_face_size * factor^i down to 12 px) and
proposes 12 x 12 cells above thresholds[0]; R-Net rescores 24 x 24 crops of the
survivors; O-Net rescores 48 x 48 crops, regresses the final boxes (and five landmarks, not
kept). Between stages: non-maximum suppression, the networks' box regression, boxes made
square. Crops are clipped to the image and resized by area averaging, as facenet-pytorch
2.6.0 does, so boxes agree with its `MTCNN.detect` (tests/test_core_mtcnn.py).

The state_dicts (facenet-pytorch 2.6.0, `facenet_pytorch/data/{pnet,rnet,onet}.pt`) load
through one key table per network (`KEYS`); RNet/ONet flatten their last feature map in
(width, height, channel) order, the layout their dense layers were trained on.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# checkpoint key prefix -> ours, per network
KEYS: Dict[str, Dict[str, str]] = {
    "pnet": {"conv1": "body.0", "prelu1": "body.1", "conv2": "body.3", "prelu2": "body.4",
             "conv3": "body.5", "prelu3": "body.6", "conv4_1": "face", "conv4_2": "box"},
    "rnet": {"conv1": "body.0", "prelu1": "body.1", "conv2": "body.3", "prelu2": "body.4",
             "conv3": "body.6", "prelu3": "body.7", "dense4": "dense.0", "prelu4": "dense.1",
             "dense5_1": "face", "dense5_2": "box"},
    "onet": {"conv1": "body.0", "prelu1": "body.1", "conv2": "body.3", "prelu2": "body.4",
             "conv3": "body.6", "prelu3": "body.7", "conv4": "body.9", "prelu4": "body.10",
             "dense5": "dense.0", "prelu5": "dense.1", "dense6_1": "face", "dense6_2": "box",
             "dense6_3": "landmarks"},
}


def _pool(kernel: int) -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel, 2, ceil_mode=True)


class PNet(nn.Module):
    """(B, 3, H, W) normalised image -> box offsets (B, 4, H', W'), face prob. (B, H', W');
    output cell (i, j) is the 12 x 12 window at (2 j, 2 i)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 10, 3), nn.PReLU(10), _pool(2),
                                  nn.Conv2d(10, 16, 3), nn.PReLU(16),
                                  nn.Conv2d(16, 32, 3), nn.PReLU(32))
        self.face = nn.Conv2d(32, 2, 1)
        self.box = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor):
        x = self.body(x)
        return self.box(x), torch.softmax(self.face(x), dim=1)[:, 1]


class RNet(nn.Module):
    """(B, 3, 24, 24) -> box offsets (B, 4), face probability (B,)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 28, 3), nn.PReLU(28), _pool(3),
                                  nn.Conv2d(28, 48, 3), nn.PReLU(48), _pool(3),
                                  nn.Conv2d(48, 64, 2), nn.PReLU(64))
        self.dense = nn.Sequential(nn.Linear(576, 128), nn.PReLU(128))
        self.face = nn.Linear(128, 2)
        self.box = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor):
        x = self.dense(self.body(x).transpose(1, 3).flatten(1))
        return self.box(x), torch.softmax(self.face(x), dim=1)[:, 1]


class ONet(nn.Module):
    """(B, 3, 48, 48) -> box offsets (B, 4), face probability (B,), landmarks (B, 10)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 32, 3), nn.PReLU(32), _pool(3),
                                  nn.Conv2d(32, 64, 3), nn.PReLU(64), _pool(3),
                                  nn.Conv2d(64, 64, 3), nn.PReLU(64), _pool(2),
                                  nn.Conv2d(64, 128, 2), nn.PReLU(128))
        self.dense = nn.Sequential(nn.Linear(1152, 256), nn.PReLU(256))
        self.face = nn.Linear(256, 2)
        self.box = nn.Linear(256, 4)
        self.landmarks = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor):
        x = self.dense(self.body(x).transpose(1, 3).flatten(1))
        return self.box(x), torch.softmax(self.face(x), dim=1)[:, 1], self.landmarks(x)


def map_keys(name: str, state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """facenet-pytorch's keys of network `name` ("pnet", "rnet", "onet") renamed to ours."""
    table, out = KEYS[name], {}
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        if module not in table:
            raise KeyError(f"MTCNN {name}: unexpected key {key!r}")
        out[f"{table[module]}.{param}"] = value
    return out


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float,
        by_smaller: bool = False) -> torch.Tensor:
    """Indices (into boxes (n, 4)) kept by greedy non-maximum suppression, best score first.

    A box is dropped when its overlap with a kept one exceeds `threshold`: intersection over
    union of (x2 - x1) x (y2 - y1) areas, or with by_smaller, intersection over the smaller
    area counting the end pixel ((x2 - x1 + 1) x (y2 - y1 + 1), MTCNN's last stage).
    """
    box = boxes.detach().cpu().double().numpy()
    order = np.argsort(-scores.detach().cpu().numpy(), kind="stable")
    plus = 1.0 if by_smaller else 0.0
    x1, y1, x2, y2 = box[:, 0], box[:, 1], box[:, 2], box[:, 3]
    area = (x2 - x1 + plus) * (y2 - y1 + plus)
    keep = []
    while len(order):
        best, rest = order[0], order[1:]
        keep.append(best)
        w = np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + plus
        h = np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + plus
        inter = np.clip(w, 0, None) * np.clip(h, 0, None)
        if by_smaller:
            overlap = inter / np.minimum(area[best], area[rest])
        else:
            overlap = inter / (area[best] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return torch.as_tensor(np.array(keep, dtype=np.int64), device=boxes.device)


def _squared(boxes: torch.Tensor) -> torch.Tensor:
    """(n, >= 4) boxes grown to squares of side max(w, h) around the same centre."""
    out = boxes.clone()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    out[:, 0] = boxes[:, 0] + 0.5 * (w - side)
    out[:, 1] = boxes[:, 1] + 0.5 * (h - side)
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regressed(boxes: torch.Tensor, offsets: torch.Tensor, plus: float) -> torch.Tensor:
    """boxes (n, >= 4) moved by offsets (n, 4) in units of their width/height (+ plus px)."""
    out = boxes.clone()
    w = boxes[:, 2] - boxes[:, 0] + plus
    h = boxes[:, 3] - boxes[:, 1] + plus
    out[:, :4] = boxes[:, :4] + offsets * torch.stack([w, h, w, h], dim=1)
    return out


def _resized(image: torch.Tensor, size) -> torch.Tensor:
    """Area-averaged resize, channels-last (pooling and convolutions are several times
    faster in that layout on a CPU)."""
    out = F.interpolate(image, size=size, mode="area")
    return out.contiguous(memory_format=torch.channels_last)


def _normalised(image: torch.Tensor) -> torch.Tensor:
    return (image - 127.5) * 0.0078125


class MTCNN(nn.Module):
    """The three networks and the cascade that runs them on one image at a time."""

    def __init__(self, min_face_size: float = 20.0,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), factor: float = 0.709):
        super().__init__()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)

    def scales(self, height: int, width: int) -> list:
        """The pyramid: image scales at which a min_face_size face is 12 px, then smaller."""
        scale, side, out = 12.0 / self.min_face_size, min(height, width), []
        side *= scale
        while side >= 12:
            out.append(scale)
            scale *= self.factor
            side *= self.factor
        return out

    @torch.no_grad()
    def detect(self, image: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
        """(n, 5) float32 boxes (x1, y1, x2, y2, probability) of the faces in `image`
        (H, W, 3) uint8 RGB, best first."""
        device = next(self.parameters()).device
        img = torch.as_tensor(np.ascontiguousarray(image), device=device)
        if img.dim() != 3 or img.shape[2] != 3:
            raise ValueError(f"MTCNN expects an (H, W, 3) RGB image, got {tuple(img.shape)}")
        img = img.permute(2, 0, 1)[None].float()
        height, width = img.shape[2:]
        boxes = self._propose(img)
        if len(boxes):
            boxes = self._refine(img, boxes, 24, self.rnet, self.thresholds[1])
        if len(boxes):
            boxes = self._refine(img, boxes, 48, self.onet, self.thresholds[2])
        return boxes.cpu().numpy().astype(np.float32).reshape(-1, 5)

    def _propose(self, img: torch.Tensor) -> torch.Tensor:
        height, width = img.shape[2:]
        found = []
        for scale in self.scales(height, width):
            size = (int(height * scale + 1), int(width * scale + 1))
            offsets, prob = self.pnet(_normalised(_resized(img, size)))
            rows, cols = torch.nonzero(prob[0] >= self.thresholds[0], as_tuple=True)
            if not len(rows):
                continue
            cell = torch.stack([cols, rows], dim=1).to(img.dtype)
            start = torch.floor((2 * cell + 1) / scale)
            end = torch.floor((2 * cell + 12) / scale)
            candidates = torch.cat([start, end, prob[0, rows, cols, None],
                                    offsets[0, :, rows, cols].T], dim=1)
            found.append(candidates[nms(candidates[:, :4], candidates[:, 4], 0.5)])
        if not found:
            return torch.zeros(0, 5, device=img.device)
        boxes = torch.cat(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        return _squared(_regressed(boxes[:, :5], boxes[:, 5:9], plus=0.0))

    def _crops(self, img: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
        """(n, 3, size, size) normalised crops of `boxes`, clipped to the image."""
        height, width = img.shape[2:]
        edges = boxes[:, :4].trunc().long().cpu().numpy()
        x1, y1 = np.maximum(edges[:, 0], 1), np.maximum(edges[:, 1], 1)
        x2, y2 = np.minimum(edges[:, 2], width), np.minimum(edges[:, 3], height)
        crops = [_resized(img[:, :, y1[k] - 1:y2[k], x1[k] - 1:x2[k]], (size, size))
                 for k in range(len(edges))]
        return _normalised(torch.cat(crops))

    def _refine(self, img: torch.Tensor, boxes: torch.Tensor, size: int, net: nn.Module,
                threshold: float) -> torch.Tensor:
        height, width = img.shape[2:]
        edges = boxes[:, :4].trunc()
        valid = ((edges[:, 2].clamp(max=width) > edges[:, 0].clamp(min=1) - 1)
                 & (edges[:, 3].clamp(max=height) > edges[:, 1].clamp(min=1) - 1))
        boxes = boxes[valid]
        if not len(boxes):
            return boxes
        offsets, prob = net(self._crops(img, boxes, size))[:2]
        passed = prob > threshold
        boxes = torch.cat([boxes[passed, :4], prob[passed, None]], dim=1)
        offsets = offsets[passed]
        if net is self.rnet:
            keep = nms(boxes[:, :4], boxes[:, 4], 0.7)
            return _squared(_regressed(boxes[keep], offsets[keep], plus=1.0))
        boxes = _regressed(boxes, offsets, plus=1.0)
        return boxes[nms(boxes[:, :4], boxes[:, 4], 0.7, by_smaller=True)]


def load_mtcnn(paths: Optional[Mapping[str, str]] = None, **settings) -> MTCNN:
    """MTCNN in eval mode with facenet-pytorch's weights; `paths` maps "pnet"/"rnet"/"onet" to
    their files (default: core.weights.ensure("mtcnn/...")); settings go to MTCNN()."""
    if paths is None:
        from core.weights import ensure_many
        found = ensure_many(["mtcnn/pnet", "mtcnn/rnet", "mtcnn/onet"])
        paths = {name.split("/")[1]: str(path) for name, path in found.items()}
    model = MTCNN(**settings)
    for name in ("pnet", "rnet", "onet"):
        state = torch.load(paths[name], map_location="cpu", weights_only=True)
        net = getattr(model, name)
        mapped = map_keys(name, state)
        missing = sorted(set(net.state_dict()) - set(mapped))
        if missing:
            raise KeyError(f"MTCNN {name} ({paths[name]}): parameters not in the file: {missing}")
        net.load_state_dict(mapped, strict=True)
    return model.eval().to(memory_format=torch.channels_last)
