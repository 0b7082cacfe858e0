"""How far does the video alone get? A diagnostic for the demo's fusion result.

Trains a video-only segmenter (embeddings -> Linear(E, 64) + ReLU -> 2-layer BiLSTM 64 ->
powerset classes, read at the audio model's frame times) on a protocol's train split with
the same chunks, targets, permutation-invariant loss and local DER as training, and prints
the validation DER every --val-every steps. If it learns, the video carries who speaks
when; how many steps it needs says how long the fusion models need. First it prints the
DER of a hand rule on the synthetic database's mouth channels (slot k speaks where its
mouth channel > 0.3): what the video says, with nothing to learn. --features mouth feeds
the probe the mouth channels only; the gap to --features all is what the other
dimensions (the faces) cost through overfitting; --center removes each chunk's mean
embedding first, as the fusion models do.

    python run.py synth --out /tmp/db30 --minutes 30 --eval-minutes 4
    python bench/video_probe.py --database /tmp/db30/database.yml --steps 600
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from core import build_model  # noqa: E402
from core.fusion import center_video  # noqa: E402
from data.synthetic import SLOTS  # noqa: E402
from train.config import Config  # noqa: E402
from train.data_adapter import build  # noqa: E402
from train.distributed import World  # noqa: E402
from train.loss import segmentation_loss  # noqa: E402
from train.metrics import Sums, der_from_sums, der_sums  # noqa: E402


class VideoOnly(nn.Module):
    """video (B, Tv, E), mask (B, Tv) -> log-probabilities (B, F, classes) at frame times."""

    def __init__(self, esize: int, frame_times_s: torch.Tensor, fps: float, classes: int,
                 keep: torch.Tensor, centering: bool = False):
        super().__init__()
        self.centering = centering
        self.register_buffer("keep", keep.float())  # (E,) 1 = dimension the probe sees
        self.project = nn.Linear(esize, 64)
        self.lstm = nn.LSTM(64, 64, num_layers=2, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(128, classes)
        self.register_buffer("index", torch.round(frame_times_s * fps).long())

    def forward(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        video = video.masked_fill(~mask[..., None], 0.0) * self.keep
        if self.centering:
            video = center_video(video, mask)
        hidden, _ = self.lstm(torch.relu(self.project(video)))
        scores = torch.log_softmax(self.classifier(hidden), dim=-1)
        return scores[:, self.index.clamp(max=video.shape[1] - 1)]


def mouth_dims(esize: int) -> list:
    """Indices of the synthetic database's mouth channels: the last dim of each slot."""
    return [(k + 1) * (esize // SLOTS) - 1 for k in range(SLOTS)]


def rule_scores(video: torch.Tensor, mask: torch.Tensor, index: torch.Tensor,
                esize: int) -> torch.Tensor:
    """The synthetic database's mouth channels (B, F, SLOTS) at the frame times: a hand rule
    (slot k speaks where its mouth channel > 0.3) that no training can beat by much."""
    video = video.float().masked_fill(~mask[..., None], 0.0)
    return video[:, index.clamp(max=video.shape[1] - 1)][..., mouth_dims(esize)]


def report(step: str, sums: Sums, extra: str = "") -> None:
    rates = der_from_sums(sums.values)
    print(f"{step}: {extra}validation DER {100 * rates['der']:.1f}% (FA "
          f"{100 * rates['false_alarm']:.1f} miss {100 * rates['missed']:.1f} conf "
          f"{100 * rates['confusion']:.1f})", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", required=True)
    parser.add_argument("--protocol", default="Synthetic.SpeakerDiarization.AV")
    parser.add_argument("--video-dir", default=None, help="default: video/ next to database")
    parser.add_argument("--esize", type=int, default=128)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--features", default="all", choices=["all", "mouth", "face"],
                        help="dimensions the probe sees: all, the synthetic database's mouth "
                             "channels only (last dim of each of its 4 slots), or all but those")
    parser.add_argument("--center", action="store_true",
                        help="subtract each chunk's mean embedding first, as the fusion "
                             "models do by default (core.fusion.center_video)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    video_dir = args.video_dir or str(Path(args.database).parent / "video")
    reference = build_model("hybrid", esize=args.esize, duration_s=args.duration)
    with tempfile.TemporaryDirectory() as cdir:
        config = Config(model="hybrid", esize=args.esize, protocol=args.protocol,
                        database=args.database, video_dir=video_dir, duration=args.duration,
                        batch_size=args.batch_size, workers=0, cdir=cdir)
        data = build(config, reference, World())
        first = next(iter(data.validation()))
        num_frames = first["target"].shape[1]
        mouth = torch.zeros(args.esize, dtype=torch.bool)
        mouth[mouth_dims(args.esize)] = True
        keep = {"all": torch.ones_like(mouth), "mouth": mouth, "face": ~mouth}[args.features]
        probe = VideoOnly(args.esize, reference.frame_times(num_frames), reference.video_fps,
                          reference.powerset.num_classes, keep, args.center)
        sums = Sums()
        for val in data.validation():
            sums.add(**der_sums(rule_scores(val["video"], val["video_mask"], probe.index,
                                            args.esize), val["target"], None, 0.3))
        report("rule (mouth channel > 0.3)", sums)
        optimizer = torch.optim.Adam(probe.parameters(), lr=args.lr)
        step, started = 0, time.perf_counter()
        while step < args.steps:
            for batch in data.train(step // data.batches_per_epoch):
                scores = probe(batch["video"], batch["video_mask"])
                loss = segmentation_loss(scores, batch["target"], reference.powerset)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                if step % args.val_every == 0 or step == args.steps:
                    probe.eval()
                    sums = Sums()
                    with torch.no_grad():
                        for val in data.validation():
                            sums.add(**der_sums(probe(val["video"], val["video_mask"]),
                                                val["target"], reference.powerset))
                    probe.train()
                    report(f"step {step} ({time.perf_counter() - started:.0f} s)", sums,
                           f"train loss {loss.item():.3f}  ")
                if step >= args.steps:
                    break
    return 0


if __name__ == "__main__":
    sys.exit(main())
