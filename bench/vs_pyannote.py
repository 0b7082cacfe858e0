"""avdiar side by side with pyannote.audio 4.0.7: the same PyanNet weights, one process.

    make bench-venv                          # .bench-venv: avdiar + pyannote.audio==4.0.7
    .bench-venv/bin/python bench/vs_pyannote.py --out bench/out/vs_pyannote.md
    .bench-venv/bin/python bench/vs_pyannote.py --batch-size 8 --repeats 3 --infer-minutes 5

Parts (each printed as it finishes, then one Markdown table of ratios ours / pyannote's):
  check   max |ours - pyannote| on one batch (eval mode), same weights: pyannote's PyanNet
          with segmentation-3.0's architecture, random but seeded, saved by Lightning and read
          by core.load_pretrained.
  step    training step (forward, NLL on random powerset targets, backward, Adam step) on
          batch x 10 s: ours float32 vs pyannote float32, and ours under
          torch.autocast(device, bfloat16) vs pyannote float32. Median over repeats after a
          warm-up; the models take turns in every repeat, in a rotating order.
  infer   real-time factor of segmentation over one synthetic file (10 s windows, 1 s step,
          batch 32): eval.inference.infer_file vs pyannote.audio.Inference, both float32;
          with --device cuda also ours in bf16 autocast (what avdiar does on a GPU); with
          --per-window also ours float32 with SincNet run on every window (no shared sinc
          layer), to time what the shared path gains on the device at hand.
  loader  chunks/s of training batches (10 s, batch 32, same worker count) on the synthetic
          database: data.make_train_loader (with 384-dim video) vs pyannote's
          SpeakerDiarization task's train_dataloader (audio only).
  floor   FLOPs per chunk and matmul rates (bench/floor.py) against the measured steps.

Both sides run with torch.set_num_threads(--threads), on --device (cpu, or cuda: the
models and batches on the GPU, every timing closed by torch.cuda.synchronize). Other load on
the machine moves the absolute figures; the ratios are what to read.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench import floor  # noqa: E402
from eval.inference import window_starts  # noqa: E402

SAMPLE_RATE = 16000
DURATION_S = 10.0
Seconds = Tuple[float, float]  # (wall, CPU time of this process)
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
        sys.exit("bench/vs_pyannote.py needs pyannote.audio==4.0.7: run `make bench-venv` and "
                 "use .bench-venv/bin/python")


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


# --- training step ----------------------------------------------------------------------
def make_step(model, bf16: bool,
              device: torch.device) -> Callable[[torch.Tensor, torch.Tensor], Seconds]:
    """A function (waveforms, targets) -> (wall, CPU) seconds of one training step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()

    def step(waveforms: torch.Tensor, targets: torch.Tensor) -> Seconds:
        floor.synchronize(device)
        started, started_cpu = time.perf_counter(), time.process_time()
        optimizer.zero_grad(set_to_none=True)
        context = (torch.autocast(device.type, dtype=torch.bfloat16) if bf16
                   else contextlib.nullcontext())
        with context:
            scores = model(waveforms)
        loss = F.nll_loss(scores.float().reshape(-1, scores.shape[-1]), targets.reshape(-1))
        loss.backward()
        optimizer.step()
        floor.synchronize(device)
        return time.perf_counter() - started, time.process_time() - started_cpu

    return step


def time_steps(steps: Dict[str, Callable], batch_size: int, repeats: int,
               warmup: int, device: torch.device) -> Dict[str, Seconds]:
    """Median (wall, CPU) seconds per step of each named step function; all take turns
    every repeat."""
    num_samples = int(DURATION_S * SAMPLE_RATE)
    generator = torch.Generator().manual_seed(2)
    waveforms = (0.1 * torch.randn(batch_size, 1, num_samples, generator=generator)).to(device)
    targets = torch.randint(0, 7, (batch_size, 589), generator=generator).to(device)
    names = list(steps)
    times: Dict[str, List[Seconds]] = {name: [] for name in names}
    for repeat in range(warmup + repeats):
        order = names[repeat % len(names):] + names[:repeat % len(names)]
        seconds = {name: steps[name](waveforms, targets) for name in order}
        for name in names:
            if repeat >= warmup:
                times[name].append(seconds[name])
        print(f"  step {'warm-up' if repeat < warmup else 'repeat'} {repeat + 1}/"
              f"{warmup + repeats}: " + ", ".join(
                  f"{n} {seconds[n][0]:.2f} s ({seconds[n][1]:.2f} s cpu)" for n in names),
              flush=True)
    return {name: _median_pair(values) for name, values in times.items()}


def _median_pair(values: List[Seconds]) -> Seconds:
    return statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)


def native_bf16() -> bool:
    """True when this CPU has bf16 matmul instructions (AVX512-BF16 or AMX), read from
    /proc/cpuinfo's flags (Linux); elsewhere from torch's CPU capability."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        flags = set(cpuinfo.read_text(errors="replace").split())
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    capability = torch.backends.cpu.get_cpu_capability()
    return "AVX512" in capability or "AMX" in capability


# --- inference --------------------------------------------------------------------------
def synthetic_recording(minutes: float, seed: int = 3) -> torch.Tensor:
    """(1, samples) float32: noise with a slow random envelope, `minutes` long at 16 kHz."""
    generator = torch.Generator().manual_seed(seed)
    num_samples = int(minutes * 60 * SAMPLE_RATE)
    envelope = torch.rand(1, 1, num_samples // 4000 + 2, generator=generator)
    envelope = F.interpolate(envelope, size=num_samples, mode="linear")[0]
    return (0.1 * envelope * torch.randn(1, num_samples, generator=generator)).float()


def time_inference(ours, theirs, waveform: torch.Tensor, batch_size: int, repeats: int,
                   device: torch.device, per_window: bool = False) -> Dict[str, Seconds]:
    """Median (wall, CPU) seconds for the whole file: {"ours": ..., "pyannote": ...}, both
    float32, and "ours bf16" (autocast) on CUDA or a CPU with native bf16; they take turns,
    in a rotating order. With bf16 also {"bf16 max prob diff": ..., "bf16 frames changed":
    ...}: ours bf16 against ours float32, the largest probability difference and the share
    of (window, frame, speaker) activations that differ. per_window: also "ours per-window",
    float32 with SincNet run on every window (infer_file's share_sinc=False), and
    "per-window max prob diff" against ours float32."""
    from pyannote.audio import Inference

    from eval.inference import infer_file

    inference = Inference(theirs, window="sliding", step=1.0, batch_size=batch_size,
                          device=device)

    outputs = {}

    def ours_run(amp: str, share_sinc: bool = True):
        def run():
            outputs[amp if share_sinc else "per-window"] = infer_file(
                ours, waveform, step_ratio=1.0 / DURATION_S, batch_size=batch_size,
                device=device, amp=amp, share_sinc=share_sinc)
        return run

    runs = {
        "pyannote": lambda: inference({"waveform": waveform, "sample_rate": SAMPLE_RATE}),
        "ours": ours_run("off"),
    }
    if device.type == "cuda" or native_bf16():
        runs["ours bf16"] = ours_run("bf16")
    if per_window:
        runs["ours per-window"] = ours_run("off", share_sinc=False)
    results: Dict[str, List[Seconds]] = {name: [] for name in runs}
    names = list(runs)
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            floor.synchronize(device)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            started, started_cpu = time.perf_counter(), time.process_time()
            runs[name]()
            floor.synchronize(device)
            results[name].append((time.perf_counter() - started,
                                  time.process_time() - started_cpu))
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
            print(f"  infer {repeat + 1}/{repeats} {name}: {results[name][-1][0]:.1f} s "
                  f"({results[name][-1][1]:.1f} s cpu, {faults} minor page faults)", flush=True)
    medians = {name: _median_pair(values) for name, values in results.items()}
    if "bf16" in outputs:
        exact, bf16 = outputs["off"], outputs["bf16"]
        medians["bf16 max prob diff"] = float(abs(exact.probabilities - bf16.probabilities).max())
        medians["bf16 frames changed"] = float((exact.activations != bf16.activations).mean())
    if "per-window" in outputs:
        medians["per-window max prob diff"] = float(
            abs(outputs["off"].probabilities - outputs["per-window"].probabilities).max())
    return medians


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
def table(rows: List[List[str]]) -> str:
    lines = ["| measure | ours | pyannote.audio 4.0.7 | ours / pyannote | target | met |",
             "| --- | ---: | ---: | ---: | ---: | :---: |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def timing_rows(name: str, ours: Seconds, theirs: Seconds, unit: str,
                target: str) -> List[List[str]]:
    """Two rows, wall and CPU time (the steadier one on a shared machine with 1 thread)."""
    return [ratio_row(f"{name} (wall)", ours[0], theirs[0], unit, target),
            ratio_row(f"{name} (CPU time)", ours[1], theirs[1], unit, target)]


def ratio_row(name: str, ours: float, theirs: float, unit: str, target: str,
              higher_is_better: bool = False) -> List[str]:
    """One table row; an empty target leaves "met" empty (a row for information)."""
    ratio = ours / theirs
    met = ""
    if target:
        bound = float(target.lstrip("<>= x").rstrip("x"))
        met = "yes" if (ratio >= bound if higher_is_better else ratio <= bound) else "no"
    return [name, f"{ours:.3g} {unit}", f"{theirs:.3g} {unit}", f"{ratio:.2f}x", target, met]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32, help="training step batch")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per model first")
    parser.add_argument("--bf16-batch-size", type=int, default=None,
                        help="batch of the bf16 comparison (default: --batch-size on CPUs with "
                             "native bf16, else 1: emulated bf16 is ~100x slower); 0 skips it")
    parser.add_argument("--infer-minutes", type=float, default=30.0, help="file length; 0 skips")
    parser.add_argument("--infer-batch-size", type=int, default=32)
    parser.add_argument("--per-window", action="store_true",
                        help="also time ours with SincNet run on every window (the path "
                             "before the shared sinc layer), float32")
    parser.add_argument("--infer-repeats", type=int, default=1,
                        help="whole-file runs per side, in turns (median)")
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
    import copy

    import pyannote.audio

    started_at = time.strftime("%Y-%m-%d %H:%M %Z")
    bf16_batch = args.bf16_batch_size
    if bf16_batch is None:
        bf16_batch = args.batch_size if device.type == "cuda" or native_bf16() else 1
    where = (f"GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else
             f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    header = (f"{started_at}; torch {torch.__version__}, pyannote.audio "
              f"{pyannote.audio.__version__}; {where}, {args.threads} threads")
    print(header, flush=True)
    rows: List[List[str]] = []
    sections: List[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ours, theirs = both_models(args.seed, workdir, device)
        difference = max_abs_difference(ours, theirs, min(args.batch_size, 4), device)
        print(f"check: max |ours - pyannote| = {difference:.2e}", flush=True)

        print(f"step: batch {args.batch_size} x 10 s float32", flush=True)
        steps = time_steps({"ours": make_step(ours, False, device),
                            "pyannote": make_step(theirs, False, device)},
                           args.batch_size, args.repeats, args.warmup, device)
        name = f"train step, batch {args.batch_size} x 10 s, float32"
        rows += timing_rows(name, steps["ours"], steps["pyannote"], "s", "<= 0.7x")
        measured_floor = {"float32": steps["ours"][0]}
        measured_inference: Dict[str, float] = {}
        if bf16_batch > 0:
            print(f"step: batch {bf16_batch} x 10 s, ours bf16 autocast vs pyannote float32",
                  flush=True)
            bf16 = time_steps(
                {"ours bf16": make_step(copy.deepcopy(ours), True, device),
                 "pyannote": make_step(copy.deepcopy(theirs), False, device)},
                bf16_batch, args.repeats, args.warmup, device)
            rows += timing_rows(f"train step, batch {bf16_batch} x 10 s, ours bf16 autocast "
                                "vs pyannote float32", bf16["ours bf16"], bf16["pyannote"],
                                "s", "<= 0.35x")
            if bf16_batch == args.batch_size:
                measured_floor["bf16"] = bf16["ours bf16"][0]

        if args.infer_minutes > 0:
            print(f"infer: {args.infer_minutes:g} min file", flush=True)
            waveform = synthetic_recording(args.infer_minutes)
            seconds = time_inference(ours, theirs, waveform, args.infer_batch_size,
                                     args.infer_repeats, device, args.per_window)
            audio_s = args.infer_minutes * 60
            name = (f"inference RTF, {args.infer_minutes:g} min file, 10 s windows / 1 s step, "
                    f"batch {args.infer_batch_size}")
            for ours_name, label in (("ours", "float32"), ("ours bf16", "ours bf16 autocast vs "
                                                          "pyannote float32")):
                if ours_name in seconds:
                    rows += timing_rows(f"{name}, {label}",
                                        tuple(t / audio_s for t in seconds[ours_name]),
                                        tuple(t / audio_s for t in seconds["pyannote"]), "",
                                        "<= 0.5x")
            if "ours per-window" in seconds:
                rows += timing_rows(f"{name}, ours float32 with SincNet per window (former "
                                    "path) vs pyannote float32",
                                    tuple(t / audio_s for t in seconds["ours per-window"]),
                                    tuple(t / audio_s for t in seconds["pyannote"]), "", "")
                rows.append(["inference, ours per-window vs ours float32: max probability "
                             "difference", f"{seconds['per-window max prob diff']:.1e}",
                             "", "", "", ""])
            windows = len(window_starts(waveform.shape[-1], int(DURATION_S * SAMPLE_RATE),
                                        SAMPLE_RATE))  # 1 s step
            per_batch = args.infer_batch_size / windows  # file seconds -> seconds per batch
            measured_inference = {"float32": seconds["ours"][0] * per_batch,
                                  "pyannote": seconds["pyannote"][0] * per_batch}
            if "bf16 max prob diff" in seconds:
                rows.append(["inference, ours bf16 vs ours float32: max probability "
                             "difference, share of activations changed",
                             f"{seconds['bf16 max prob diff']:.1e}, "
                             f"{100 * seconds['bf16 frames changed']:.3f} %", "", "", "", ""])

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
    print("floor: matmul rates", flush=True)
    rates = floor.measure_rates(args.batch_size, device=device)
    sections.append("### Floor\n\n" + floor.floor_report(rates, args.batch_size, measured_floor,
                                                        measured_inference))
    report = "\n\n".join([f"## avdiar vs pyannote.audio\n\n{header}\n\ncommand: `python "
                          + " ".join(sys.argv) + "`", table(rows)] + sections) + "\n"
    print("\n" + report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
