"""SincNet over the windows of one batch (sliding-window inference), this checkout against an
earlier commit's core/sincnet.py, in turns.

    python bench/sincnet_windows.py                        # against 7d7414a, 2 threads
    python bench/sincnet_windows.py --against HEAD~3 --threads 1 --repeats 12

A batch of 32 windows of 10 s, 1 s apart (41 s of audio), through SincNet's shared path
(`SincNet.shared_first_layer`); the earlier commit's SincNet is loaded from `git show
REV:core/sincnet.py` with the same weights. Prints per-batch seconds (median and best),
minor page faults per batch, and each version's largest distance from the per-window
forward of this checkout.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.revision import load_revision  # noqa: E402
from bench.turns import in_turns  # noqa: E402
from core.sincnet import SincNet  # noqa: E402
from core.sincnet_windows import Workspace  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", default="7d7414a", help="git revision to compare with")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--windows", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours = SincNet()
    with torch.no_grad():
        for parameter in ours.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    ours.eval()
    with tempfile.TemporaryDirectory() as folder:
        theirs = load_revision(args.against, "core/sincnet.py", Path(folder)).SincNet()
    theirs.load_state_dict(ours.state_dict())
    theirs.eval()
    step, window, count = 16000, 160000, args.windows
    samples = (count - 1) * step + window
    stretch = 0.1 * torch.randn(1, samples) * torch.linspace(0.2, 2.0, samples)
    windows = stretch.unfold(-1, window, step).transpose(0, 1)
    workspace = Workspace()
    runs = {
        "this checkout": lambda: _shared(ours, stretch, windows, step, workspace),
        args.against: lambda: _shared(theirs, stretch, windows, step, None),
    }
    with torch.inference_mode():
        plain = ours(windows.contiguous())
        distance = {name: float((run() - plain).abs().max()) for name, run in runs.items()}
        timings = in_turns(runs, args.repeats)
    print(f"SincNet over {count} windows of 10 s, 1 s apart, {args.threads} threads, "
          f"{args.repeats} repeats in turns")
    for name, timed in timings.items():
        print(f"  {name}: median {timed.median:.3f} s, best {min(timed.seconds):.3f} s, "
              f"{timed.faults_per_run} page faults per batch, max |shared - per-window| "
              f"{distance[name]:.1e}")
    ratio = timings["this checkout"].median / timings[args.against].median
    print(f"  ratio of medians: {ratio:.2f}x")
    return 0


def _shared(sincnet, stretch, windows, step, workspace):
    if workspace is None:  # the earlier signature
        with sincnet.shared_first_layer(stretch, step):
            return sincnet(windows)
    with sincnet.shared_first_layer(stretch, step, workspace):
        return sincnet(windows)


if __name__ == "__main__":
    sys.exit(main())
