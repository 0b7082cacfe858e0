"""Where the time of a PyanNet step and of sliding-window inference goes, per stage.

    python bench/stages.py                       # ours only (the dev venv is enough)
    .bench-venv/bin/python bench/stages.py --pyannote --infer-minutes 5

Stages: sincnet, lstm, head (linear layers + classifier + activation), loss, optimizer
(Adam), and for inference "rest" (window batching, powerset -> multi-label conversion,
and pyannote's overlap-add aggregation). The training step is run stage by stage: each
stage's input is a detached leaf, so its backward is timed on its own; the sum of the
stages is the step. Inference is the whole-file run with forward hooks on the four
top-level modules; what the hooks do not cover is "rest".

Wall and CPU (process) time are both reported. On a shared machine use --threads 1: CPU
time then counts only our work (with several threads, waiting threads spin and count too).
The models take turns in every repeat; medians over the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SAMPLE_RATE = 16000
STAGES = ("sincnet", "lstm", "head")


class Clock:
    """Accumulates (wall, cpu) seconds per stage name."""

    def __init__(self):
        self.wall: Dict[str, float] = defaultdict(float)
        self.cpu: Dict[str, float] = defaultdict(float)

    def timed(self, name: str, function: Callable, *args):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function(*args)
        self.wall[name] += time.perf_counter() - wall
        self.cpu[name] += time.process_time() - cpu
        return result


def stage_functions(model) -> Dict[str, Callable]:
    """The three stages of a PyanNet, ours or pyannote's (same submodule names)."""
    if hasattr(model, "run_lstm"):  # ours
        return {"sincnet": model.frames, "lstm": model.run_lstm, "head": model.head}

    def sincnet(waveforms):
        return model.sincnet(waveforms).transpose(1, 2)

    def lstm(features):
        return model.lstm(features)[0]

    def head(features):
        for layer in model.linear:
            features = F.leaky_relu(layer(features))
        return model.activation(model.classifier(features))

    return {"sincnet": sincnet, "lstm": lstm, "head": head}


def staged_step(model, optimizer, waveforms, targets) -> Clock:
    """One training step, stage by stage: forward of each, loss, backward of each, Adam."""
    clock = Clock()
    functions = stage_functions(model)
    optimizer.zero_grad(set_to_none=True)
    inputs, outputs = [], []
    features = waveforms
    for name in STAGES:
        leaf = features.detach().requires_grad_(name != "sincnet")
        features = clock.timed(f"{name} fwd", functions[name], leaf)
        inputs.append(leaf)
        outputs.append(features)
    loss = clock.timed("loss fwd", lambda s: F.nll_loss(s.float().reshape(-1, s.shape[-1]),
                                                          targets.reshape(-1)), features)
    clock.timed("loss bwd", loss.backward)
    for index in (2, 1, 0):
        grad = inputs[index + 1].grad if index < 2 else None
        if grad is None and index < 2:
            raise RuntimeError("stage input got no gradient")
        if index < 2:
            clock.timed(f"{STAGES[index]} bwd", outputs[index].backward, grad)
    clock.timed("optimizer", optimizer.step)
    return clock


def time_steps(models: Dict[str, torch.nn.Module], batch_size: int, repeats: int,
               warmup: int) -> Dict[str, Dict[str, Tuple[float, float]]]:
    """Median (wall, cpu) per stage of each model's training step."""
    generator = torch.Generator().manual_seed(2)
    waveforms = 0.1 * torch.randn(batch_size, 1, 10 * SAMPLE_RATE, generator=generator)
    targets = torch.randint(0, 7, (batch_size, 589), generator=generator)
    optimizers = {n: torch.optim.Adam(m.parameters(), lr=1e-4) for n, m in models.items()}
    clocks: Dict[str, List[Clock]] = {name: [] for name in models}
    names = list(models)
    for repeat in range(warmup + repeats):
        order = names[repeat % len(names):] + names[:repeat % len(names)]
        for name in order:
            models[name].train()
            clock = staged_step(models[name], optimizers[name], waveforms, targets)
            if repeat >= warmup:
                clocks[name].append(clock)
            print(f"  step {repeat + 1}/{warmup + repeats} {name}: "
                  f"{sum(clock.wall.values()):.2f} s wall, {sum(clock.cpu.values()):.2f} s cpu",
                  flush=True)
    return {name: _medians(values) for name, values in clocks.items()}


def _medians(clocks: List[Clock]) -> Dict[str, Tuple[float, float]]:
    keys = list(clocks[0].wall)
    result = {k: (statistics.median(c.wall[k] for c in clocks),
                  statistics.median(c.cpu[k] for c in clocks)) for k in keys}
    result["total"] = (statistics.median(sum(c.wall.values()) for c in clocks),
                       statistics.median(sum(c.cpu.values()) for c in clocks))
    return result


def hooked(model, clock: Clock) -> List:
    """Forward hooks that add each top-level stage's time to `clock` (the linear layers and
    the classifier count as "head"; the activation after them goes to "rest"). Ours: no
    hook on the lstm module, run_inference times run_lstm instead."""
    handles = []
    modules = [("sincnet", model.sincnet)]
    if not hasattr(model, "run_lstm"):
        modules.append(("lstm", model.lstm))
    modules += [("head", layer) for layer in model.linear] + [("head", model.classifier)]
    for name, module in modules:
        started: Dict[str, float] = {}

        def pre(_module, _args, started=started):
            started["wall"], started["cpu"] = time.perf_counter(), time.process_time()

        def post(_module, _args, _output, name=name, started=started):
            clock.wall[name] += time.perf_counter() - started["wall"]
            clock.cpu[name] += time.process_time() - started["cpu"]

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    return handles


def run_inference(name: str, model, waveform: torch.Tensor, batch_size: int) -> Clock:
    """Whole-file sliding-window inference (10 s windows, 1 s step) with stage hooks."""
    clock = Clock()
    handles = hooked(model, clock)
    wall, cpu = time.perf_counter(), time.process_time()
    if hasattr(model, "run_lstm"):
        from eval.inference import infer_file

        # ours runs the LSTM through run_lstm (in halves on two threads at two or more
        # threads), which a hook on the lstm module does not see: time run_lstm itself
        run_lstm = model.run_lstm
        model.run_lstm = lambda features: clock.timed("lstm", run_lstm, features)
        try:
            infer_file(model, waveform, step_ratio=0.1, batch_size=batch_size)
        finally:
            del model.run_lstm
    else:
        from pyannote.audio import Inference

        Inference(model, window="sliding", step=1.0, batch_size=batch_size,
                  device=torch.device("cpu"))({"waveform": waveform, "sample_rate": SAMPLE_RATE})
    total_wall, total_cpu = time.perf_counter() - wall, time.process_time() - cpu
    for handle in handles:
        handle.remove()
    clock.wall["rest"] = total_wall - sum(clock.wall.values())
    clock.cpu["rest"] = total_cpu - sum(clock.cpu.values())
    return clock


def report(title: str, results: Dict[str, Dict[str, Tuple[float, float]]]) -> str:
    names = list(results)
    keys = list(results[names[0]])
    header = "| stage | " + " | ".join(f"{n} wall s | {n} cpu s" for n in names)
    if len(names) == 2:
        header += " | cpu ours / pyannote"
    lines = [f"{title}", "", header + " |",
             "| --- " * (1 + 2 * len(names) + (len(names) == 2)) + "|"]
    for key in keys:
        row = [key] + [f"{results[n][key][i]:.3f}" for n in names for i in (0, 1)]
        if len(names) == 2:
            theirs = results[names[1]].get(key, (0.0, 0.0))[1]
            row.append(f"{results[names[0]][key][1] / theirs:.2f}x" if theirs > 0 else "")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--infer-minutes", type=float, default=5.0, help="0 skips inference")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pyannote", action="store_true",
                        help="also time pyannote.audio's PyanNet (needs the bench venv)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from bench.vs_pyannote import ARCHITECTURE, both_models, synthetic_recording

    with tempfile.TemporaryDirectory() as tmp:
        if args.pyannote:
            ours, theirs = both_models(args.seed, Path(tmp), torch.device("cpu"))
            models = {"ours": ours, "pyannote": theirs}
        else:
            from core.models import build_model

            torch.manual_seed(args.seed)
            architecture = {k: {kk: vv for kk, vv in v.items() if kk != "monolithic"}
                            for k, v in ARCHITECTURE.items()}
            models = {"ours": build_model(0, **architecture)}
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch "
              f"{args.batch_size} x 10 s", flush=True)
        steps = time_steps(models, args.batch_size, args.repeats, args.warmup)
        print("\n" + report(f"Training step, batch {args.batch_size} x 10 s, float32, median "
                            f"of {args.repeats}", steps), flush=True)
        if args.infer_minutes > 0:
            waveform = synthetic_recording(args.infer_minutes)
            clocks: Dict[str, List[Clock]] = {name: [] for name in models}
            for repeat in range(args.repeats):
                for name, model in models.items():
                    model.eval()
                    clocks[name].append(run_inference(name, model, waveform, 32))
                    print(f"  infer {repeat + 1}/{args.repeats} {name}: "
                          f"{sum(clocks[name][-1].cpu.values()):.2f} s cpu", flush=True)
            results = {name: _medians(values) for name, values in clocks.items()}
            print("\n" + report(f"Inference, {args.infer_minutes:g} min file, 10 s windows, "
                                f"1 s step, batch 32, median of {args.repeats}", results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
