"""avdiar side by side with pyannote.audio 4.0.7: the same PyanNet weights, one process.

    make bench-venv                          # .bench-venv: avdiar + pyannote.audio==4.0.7
    make bench                               # = .bench-venv/bin/python -m bench.vs_pyannote
    .bench-venv/bin/python -m bench.vs_pyannote --repeats 3 --infer-minutes 5 --workers -1
    python -m bench.vs_pyannote --device cuda --threads 8 --plain --workers -1

Parts (each printed as it finishes, then one Markdown table of ratios ours / pyannote's):
  check   max |ours - pyannote| on one batch (eval mode), same weights: pyannote's PyanNet
          with segmentation-3.0's architecture, random but seeded, saved by Lightning and read
          by core.load_pretrained.
  step    training step (forward, NLL on random powerset targets, backward, Adam step) on
          batch x 10 s: ours float32 vs pyannote float32; where bf16 is native (CUDA, or a
          CPU with AVX512-BF16 or AMX) also ours under bf16 autocast vs pyannote float32.
  infer   real-time factor of segmentation over one synthetic file (10 s windows, 1 s step,
          batch 32): eval.inference.infer_file vs pyannote.audio.Inference, both float32,
          and ours in bf16 autocast where bf16 is native; with --plain also ours float32 with
          the speed paths off (core/speed.py).
  loader  chunks/s of training batches (10 s, batch 32, same worker count) on the synthetic
          database: data.make_train_loader (with 384-dim video) vs pyannote's
          SpeakerDiarization task's train_dataloader (audio only).

Both sides run with torch.set_num_threads(--threads), on --device, timed in turns
(bench/timing.py). Other load on the machine moves the absolute figures; the ratios are
what to read. Targets: step <= 0.7x float32, <= 0.35x ours bf16; inference <= 0.5x with
ours in bf16 (float32 inference is the exact default and has no target); loader >= 2x.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch

from bench import timing
from bench.workloads import synthetic_recording, training_step
from core import speed

SAMPLE_RATE = 16000
DURATION_S = 10.0
ARCHITECTURE = {  # pyannote/segmentation-3.0
    "sincnet": {"stride": 10},
    "lstm": {"hidden_size": 128, "num_layers": 4, "bidirectional": True, "monolithic": True,
             "dropout": 0.5},
    "linear": {"hidden_size": 128, "num_layers": 2},
}


def _require_pyannote() -> None:
    try:
        import pyannote.audio  # noqa: F401
    except ImportError:
        sys.exit("bench.vs_pyannote needs pyannote.audio==4.0.7: run `make bench-venv` and "
                 "use .bench-venv/bin/python -m bench.vs_pyannote")


# --- the two models ---------------------------------------------------------------------
def segmentation_specifications():
    from pyannote.audio.core.task import Problem, Resolution, Specifications

    return Specifications(problem=Problem.MONO_LABEL_CLASSIFICATION, resolution=Resolution.FRAME,
                          duration=DURATION_S, min_duration=None,
                          classes=[f"speaker#{i + 1}" for i in range(3)],
                          powerset_max_classes=2, permutation_invariant=True)


def pyannote_model(seed: int, task=None):
    """pyannote's PyanNet with segmentation-3.0's architecture, seeded initial weights."""
    from pyannote.audio.models.segmentation import PyanNet as TheirPyanNet

    torch.manual_seed(seed)
    model = TheirPyanNet(**ARCHITECTURE, task=task)
    if task is None:
        model.specifications = segmentation_specifications()
        model.setup()
    return model


def save_with_lightning(model, path: Path) -> None:
    """Write `model` as pyannote training does: Lightning's Trainer.save_checkpoint."""
    import lightning

    with tempfile.TemporaryDirectory() as tmp:
        trainer = lightning.Trainer(accelerator="cpu", devices=1, logger=False,
                                    enable_progress_bar=False, enable_model_summary=False,
                                    default_root_dir=tmp)
        trainer.strategy.connect(model)
        trainer.save_checkpoint(str(path), weights_only=False)


def both_models(seed: int, workdir: Path, device: torch.device):
    """(ours, theirs) holding identical weights, on `device`."""
    from core import load_pretrained

    theirs = pyannote_model(seed)
    checkpoint = workdir / "pyannet.ckpt"
    save_with_lightning(theirs, checkpoint)
    return load_pretrained(str(checkpoint)).to(device), theirs.to(device)


def max_abs_difference(ours, theirs, batch_size: int, device: torch.device) -> float:
    """max |ours - theirs| of the eval-mode log-probabilities on one random batch."""
    waveforms = 0.1 * torch.randn(batch_size, 1, int(DURATION_S * SAMPLE_RATE),
                                  generator=torch.Generator().manual_seed(1)).to(device)
    ours.eval()
    theirs.eval()
    with torch.inference_mode():
        return float((ours(waveforms) - theirs(waveforms)).abs().max())


def native_bf16(device: torch.device) -> bool:
    """True on CUDA and on a CPU with bf16 matmul instructions (AVX512-BF16 or AMX, read
    from /proc/cpuinfo's flags on Linux, elsewhere from torch's CPU capability)."""
    if device.type == "cuda":
        return True
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        flags = set(cpuinfo.read_text(errors="replace").split())
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    capability = torch.backends.cpu.get_cpu_capability()
    return "AVX512" in capability or "AMX" in capability


# --- inference --------------------------------------------------------------------------
def time_inference(ours, theirs, waveform: torch.Tensor, batch_size: int, repeats: int,
                   device: torch.device, bf16: bool, plain: bool):
    """(timings, distances): the whole-file runs of "pyannote", "ours" (float32), with
    `bf16` "ours bf16" (autocast), with `plain` "ours plain" (float32, speed paths off),
    in turns; distances: the largest probability difference of each other run of ours
    from ours float32, and the share of (window, frame, speaker) activations it changes."""
    from pyannote.audio import Inference

    from eval.inference import infer_file

    inference = Inference(theirs, window="sliding", step=1.0, batch_size=batch_size,
                          device=device)
    outputs = {}

    def ours_run(name: str, amp: str, fast: bool):
        def run() -> None:
            with speed.speed_paths(fast):
                outputs[name] = infer_file(ours, waveform, step_ratio=1.0 / DURATION_S,
                                           batch_size=batch_size, device=device, amp=amp)
        return run

    runs = {"pyannote": lambda: inference({"waveform": waveform, "sample_rate": SAMPLE_RATE}),
            "ours": ours_run("ours", "off", speed.enabled())}
    if bf16:
        runs["ours bf16"] = ours_run("ours bf16", "bf16", speed.enabled())
    if plain:
        runs["ours plain"] = ours_run("ours plain", "off", False)
    timings = timing.in_turns(runs, repeats, warmup=0, device=device, verbose=True)
    exact = outputs["ours"]
    distances = {name: (float(abs(exact.probabilities - out.probabilities).max()),
                        float((exact.activations != out.activations).mean()))
                 for name, out in outputs.items() if name != "ours"}
    return timings, distances


# --- data loading -----------------------------------------------------------------------
def ensure_database(path: Path, files: int, minutes: float, esize: int) -> Path:
    """database.yml of the synthetic database in `path`, generated when missing."""
    from data import generate_database

    yml = path / "database.yml"
    if not yml.exists():
        print(f"  generating {files} files, {minutes:g} min, esize {esize} in {path}", flush=True)
        generate_database(path, files=files, minutes=minutes, eval_minutes=2.0, esize=esize,
                          seed=0, progress=False)
    return yml


def _chunks_per_s(batches, warmup: int, count: int) -> float:
    iterator = iter(batches)
    for _ in range(warmup):
        next(iterator)
    started, chunks = time.perf_counter(), 0
    for _ in range(count):
        batch = next(iterator)
        chunks += len(batch["waveforms"] if "waveforms" in batch else batch["X"])
    return chunks / (time.perf_counter() - started)


def time_loaders(yml: Path, workers: int, batch_size: int, batches: int, warmup: int,
                 rounds: int, workdir: Path) -> Dict[str, float]:
    """Median chunks/s over `rounds` of ours and pyannote's loader, in turns."""
    from pyannote.audio.tasks import SpeakerDiarization

    from data import build_index, load_protocol, make_train_loader
    from data.synthetic import PROTOCOL

    protocol = load_protocol(PROTOCOL, [str(yml)])
    index = build_index(protocol, "train", video_dir=str(yml.parent / "video"),
                        database_files=[str(yml)], progress=False)
    task = SpeakerDiarization(load_protocol(PROTOCOL, [str(yml)]), duration=DURATION_S,
                              batch_size=batch_size, num_workers=workers,
                              cache=str(workdir / "pyannote-cache"))
    model = pyannote_model(0, task=task)
    model.prepare_data()
    model.setup()
    rates: Dict[str, List[float]] = {"ours": [], "pyannote": []}
    for round_ in range(rounds):
        loader = make_train_loader(index, duration_s=DURATION_S, batch_size=batch_size, seed=round_,
                                   num_workers=workers, batches_per_epoch=warmup + batches)
        rates["ours"].append(_chunks_per_s(loader, warmup, batches))
        del loader
        rates["pyannote"].append(_chunks_per_s(task.train_dataloader(), warmup, batches))
        print(f"  loader round {round_ + 1}/{rounds}: ours {rates['ours'][-1]:.0f} chunks/s, "
              f"pyannote {rates['pyannote'][-1]:.0f} chunks/s", flush=True)
    return {name: statistics.median(values) for name, values in rates.items()}


# --- the report -------------------------------------------------------------------------
def ratio_row(name: str, ours: float, theirs: float, unit: str, target: str,
              higher_is_better: bool = False) -> List[str]:
    """One table row; an empty target leaves "met" empty (a row for information)."""
    ratio = ours / theirs
    met = ""
    if target:
        bound = float(target.lstrip("<>= x").rstrip("x"))
        met = "yes" if (ratio >= bound if higher_is_better else ratio <= bound) else "no"
    return [name, f"{ours:.3g} {unit}", f"{theirs:.3g} {unit}", f"{ratio:.2f}x", target, met]


def timing_rows(name: str, ours: timing.Timings, theirs: timing.Timings, unit: str,
                target: str, scale: float = 1.0) -> List[List[str]]:
    """Two rows: the medians of wall time (with the target) and of CPU time (the steadier
    one on a shared machine at one thread), times `scale`."""
    return [ratio_row(f"{name} (wall)", scale * ours.median, scale * theirs.median, unit,
                      target),
            ratio_row(f"{name} (CPU time)", scale * ours.median_cpu, scale * theirs.median_cpu,
                      unit, "")]


def table(rows: List[List[str]]) -> str:
    lines = ["| measure | ours | pyannote.audio 4.0.7 | ours / pyannote | target | met |",
             "| --- | ---: | ---: | ---: | ---: | :---: |"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32, help="training step batch")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per model first")
    parser.add_argument("--bf16", default="auto", choices=["auto", "off"],
                        help="ours in bf16 autocast too: auto = where bf16 is native "
                             "(oneDNN has no bf16 LSTM for inference on other CPUs)")
    parser.add_argument("--infer-minutes", type=float, default=30.0, help="file length; 0 skips")
    parser.add_argument("--infer-batch-size", type=int, default=32)
    parser.add_argument("--infer-repeats", type=int, default=1,
                        help="whole-file runs per side, in turns (median)")
    parser.add_argument("--plain", action="store_true",
                        help="also time ours with the speed paths off (core/speed.py)")
    parser.add_argument("--database", default="/tmp/bench_db",
                        help="synthetic database folder (generated when missing)")
    parser.add_argument("--db-files", type=int, default=12)
    parser.add_argument("--db-minutes", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2, help="loader workers; -1 skips")
    parser.add_argument("--loader-batches", type=int, default=20)
    parser.add_argument("--loader-rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where both models run (the loader part reads on the CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the Markdown report here")
    args = parser.parse_args()
    _require_pyannote()
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device")
    device = torch.device(args.device)
    import pyannote.audio

    bf16 = args.bf16 == "auto" and native_bf16(device)
    header = (f"{timing.machine_line(device, args.threads)}; pyannote.audio "
              f"{pyannote.audio.__version__}; speed paths {'on' if speed.enabled() else 'off'}")
    print(header, flush=True)
    rows: List[List[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ours, theirs = both_models(args.seed, workdir, device)
        difference = max_abs_difference(ours, theirs, min(args.batch_size, 4), device)
        print(f"check: max |ours - pyannote| = {difference:.2e}", flush=True)

        steps = {"ours": training_step(ours, device, args.batch_size),
                 "pyannote": training_step(theirs, device, args.batch_size)}
        if bf16:
            steps["ours bf16"] = training_step(copy.deepcopy(ours), device, args.batch_size,
                                               amp="bf16")
        print(f"step: batch {args.batch_size} x 10 s, {', '.join(steps)}", flush=True)
        timed = timing.in_turns(steps, args.repeats, args.warmup, device, verbose=True)
        print(timing.summary(timed, baseline="pyannote"), flush=True)
        name = f"train step, batch {args.batch_size} x 10 s"
        rows += timing_rows(f"{name}, float32", timed["ours"], timed["pyannote"], "s",
                            "<= 0.7x")
        if bf16:
            rows += timing_rows(f"{name}, ours bf16 autocast vs pyannote float32",
                                timed["ours bf16"], timed["pyannote"], "s", "<= 0.35x")

        if args.infer_minutes > 0:
            print(f"infer: {args.infer_minutes:g} min file", flush=True)
            waveform = synthetic_recording(args.infer_minutes)
            timed, distances = time_inference(ours, theirs, waveform, args.infer_batch_size,
                                              args.infer_repeats, device, bf16, args.plain)
            print(timing.summary(timed, baseline="pyannote"), flush=True)
            audio_s = args.infer_minutes * 60
            name = (f"inference RTF, {args.infer_minutes:g} min file, 10 s windows / 1 s step, "
                    f"batch {args.infer_batch_size}")
            for run, label, target in (("ours", "float32", ""),
                                       ("ours bf16", "ours bf16 autocast vs pyannote float32",
                                        "<= 0.5x"),
                                       ("ours plain", "ours float32 with the speed paths off",
                                        "")):
                if run in timed:
                    rows += timing_rows(f"{name}, {label}", timed[run], timed["pyannote"], "",
                                        target, scale=1 / audio_s)
            for run, (largest, changed) in distances.items():
                rows.append([f"inference, {run} vs ours float32: max probability difference, "
                             "share of activations changed",
                             f"{largest:.1e}, {100 * changed:.3f} %", "", "", "", ""])

        if args.workers >= 0:
            print(f"loader: {args.workers} workers", flush=True)
            yml = ensure_database(Path(args.database), args.db_files, args.db_minutes, 384)
            name = (f"train loader, chunks/s, batch 32, {args.workers} workers "
                    "(ours with 384-dim video)")
            try:
                rates = time_loaders(yml, args.workers, 32, args.loader_batches, 3,
                                     args.loader_rounds, workdir)
            except (RuntimeError, OSError) as error:  # e.g. pyannote's audio decoder lacks FFmpeg
                reason = str(error).strip().splitlines()[0][:160]
                print(f"  loader comparison failed, the other parts are kept: {reason}",
                      flush=True)
                rows.append([name, "", "", f"not measured: {reason}", ">= 2x", ""])
            else:
                rows.append(ratio_row(name, rates["ours"], rates["pyannote"], "/s", ">= 2x",
                                      higher_is_better=True))

    rows.append(["max abs difference of outputs, same weights and batch", f"{difference:.1e}",
                 "", "", "<= 1e-4", "yes" if difference <= 1e-4 else "no"])
    report = (f"## avdiar vs pyannote.audio\n\n{header}\n\ncommand: `python -m "
              f"bench.vs_pyannote {' '.join(sys.argv[1:])}`\n\n{table(rows)}\n")
    print("\n" + report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
