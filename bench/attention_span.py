"""Where in time does a fusion model's co-attention look? A diagnostic, not a timing.

Runs a trained fusion checkpoint (6, 7 or 8) over 5 s windows of a synthetic database's
split and, for every co-attention layer and head, recomputes the audio-over-video attention
weights and reports: the expected distance |t_video - t_audio| in seconds between an audio
frame and the video it reads, the attention's entropy against a uniform spread over the
window, and the head's learned width tau when the model has one (`--learned-locality`).
A head that lines audio up with its video has a small distance; one that spreads over the
whole 5 s window has about 1.7 s (the mean distance of two uniform times in 5 s) and an
entropy near the uniform one. With centred video (the default) such a uniform average is
close to zero: that head passes almost nothing from the video.

    python bench/attention_span.py demo/runs/model6/checkpoints/best.pt --db demo/db
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from core import load_pretrained  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a fusion model's checkpoint (best.pt)")
    parser.add_argument("--db", required=True, help="synthetic database folder (run.py synth)")
    parser.add_argument("--split", default="development")
    parser.add_argument("--window", type=float, default=5.0, help="seconds (default 5)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_pretrained(args.checkpoint).eval()
    if not getattr(model, "is_fusion", False):
        print(f"bench/attention_span.py: {args.checkpoint} is an audio-only model",
              file=sys.stderr)
        return 2
    modules = [m for name, m in model.named_modules() if name.endswith("audio_to_video")]
    captured = []
    for module in modules:
        module.register_forward_pre_hook(lambda m, inputs: captured.append((m, *inputs)))
    db = Path(args.db)
    uris = (db / "lists" / f"{args.split}.lst").read_text().split()
    sums = np.zeros((len(modules), 3, model.fusion_hparams["num_heads"]))
    count = 0
    for uri in uris:
        audio, rate = sf.read(db / "audio" / f"{uri}.wav", dtype="float32")
        video = np.load(db / "video" / f"{uri}.npy").astype(np.float32)
        samples, frames = int(args.window * rate), int(round(args.window * model.video_fps))
        for start in range(0, len(audio) // samples):
            wav = torch.from_numpy(audio[start * samples:(start + 1) * samples])[None, None]
            vid = torch.from_numpy(video[start * frames:(start + 1) * frames])[None]
            mask = torch.isfinite(vid).all(dim=-1)
            if vid.shape[1] < frames or not bool(mask.any()):
                continue
            captured.clear()
            with torch.no_grad():
                model(wav, torch.nan_to_num(vid), mask)
                for layer, (module, x, context, attn_mask) in enumerate(captured):
                    p = module.weights(x, context, attn_mask)[0]  # (h, F, Tv)
                    t_audio = model.frame_times(x.shape[1])
                    t_video = model.video_times(context.shape[1])
                    distance = (t_video[None, :] - t_audio[:, None]).abs()
                    present = int(mask.sum())
                    sums[layer, 0] += (p * distance).sum(-1).mean(-1).numpy()
                    entropy = -(p * p.clamp_min(1e-12).log()).sum(-1).mean(-1)
                    sums[layer, 1] += (entropy / math.log(present)).numpy()
                    sums[layer, 2] += p.max(-1).values.mean(-1).numpy()
            count += 1
    if not count:
        print(f"bench/attention_span.py: no window of {args.window:g} s with video in "
              f"{db} ({args.split})", file=sys.stderr)
        return 2
    sums /= count
    taus = [m for name, m in model.named_parameters() if name.endswith("log_tau")]
    print(f"{args.checkpoint}: {count} windows of {args.window:g} s ({args.split})")
    if taus:
        print("learned widths tau per head (s): "
              + " ".join(f"{t:.3f}" for t in taus[0].detach().exp().tolist()))
    for layer in range(len(modules)):
        print(f"layer {layer}: expected |t_video - t_audio| per head (s) "
              f"{' '.join(f'{v:.2f}' for v in sums[layer, 0])}; entropy / uniform "
              f"{' '.join(f'{v:.2f}' for v in sums[layer, 1])}; largest weight "
              f"{' '.join(f'{v:.3f}' for v in sums[layer, 2])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
