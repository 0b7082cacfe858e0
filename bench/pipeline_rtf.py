"""Full-pipeline real-time factor: avdiar against pyannote.audio 4.0.7's SpeakerDiarization.

    make bench-venv
    .bench-venv/bin/python -m bench.pipeline_rtf                  # pyannote's sample.wav, 30 s
    .bench-venv/bin/python -m bench.pipeline_rtf --minutes 2 --repeats 1

One file, one process, both pipelines (speaker-diarization-3.1's recipe) on the same input:

  segmentation  the real pyannote/segmentation-3.0 weights (avdiar's weights cache,
                core/weights.py) on both sides: pyannote's Model.from_pretrained, ours
                core.load_pretrained; 10 s windows every 1 s (step 0.1), float32.
  embeddings    one WeSpeaker ResNet34 with random weights (torch.manual_seed(--seed)):
                pyannote.audio.models.embedding.WeSpeakerResNet34, its state_dict loaded
                into core.wespeaker.WeSpeakerResNet34 by our key table; overlap excluded.
  clustering    agglomerative (centroid linkage, threshold and min_cluster_size of
                eval/clustering.py), min_duration_off 0. pyannote 4.0.7 builds a PLDA even
                when its clustering does not use one: a random one is given.

Batch size --batch-size on both sides: pyannote's segmentation_batch_size and
embedding_batch_size, ours infer_file's and window_embeddings' batch_size. Audio is
passed in memory (no decoder), telemetry off (PYANNOTE_METRICS_ENABLED=0).

Before timing: the largest embedding difference of the two embedders on real windows and
speaker masks, and the agreement of the two diarizations (DER of ours against pyannote's,
collar 0, overlap scored; 0.0 = identical turns up to the speakers' names). With random
embedder weights the clustering may be degenerate (one or few speakers); that is expected.
With pyannote's sample.wav, each side's DER against sample.rttm is printed too.

Timing (bench/timing.py): both whole pipelines in turns after warm-up; RTF = median wall
seconds / audio seconds; the ratio ours / pyannote's (target <= 0.5x); where each side's
time goes: ours timed per stage, pyannote's from its pipeline hook.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from bench import timing
from core.constants import SAMPLE_RATE

STAGES = ("segmentation", "embeddings", "clustering + reconstruction")


def _require_pyannote() -> None:
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")  # before pyannote is imported
    try:
        import pyannote.audio  # noqa: F401
    except ImportError:
        sys.exit("bench.pipeline_rtf needs pyannote.audio==4.0.7: run `make bench-venv` and "
                 "use .bench-venv/bin/python -m bench.pipeline_rtf")


def _cached(name: str) -> Path:
    from core.weights import cached

    path = cached(name)
    if path is None:
        sys.exit(f"{name} is not in avdiar's weights cache: run `make weights` (or "
                 f"python -c \"import core.weights as w; w.ensure({name!r})\")")
    return path


# --- inputs -----------------------------------------------------------------------------
def load_audio(path: str, minutes: float) -> torch.Tensor:
    """(1, samples) float32 at 16 kHz: the file, repeated and cut to `minutes` when > 0."""
    from data.audio import read_audio_file

    waveform = read_audio_file(path)
    if minutes > 0:
        wanted = int(minutes * 60 * SAMPLE_RATE)
        waveform = waveform.repeat(1, -(-wanted // waveform.shape[-1]))[:, :wanted]
    return waveform.contiguous()


def embedders(seed: int):
    """(ours, theirs): one WeSpeaker ResNet34 with random weights from `seed`, in eval mode,
    pyannote's and ours holding the same tensors (through core.wespeaker's key table)."""
    from pyannote.audio.models.embedding import WeSpeakerResNet34 as TheirWeSpeaker

    from core.wespeaker import WeSpeakerResNet34, load_wespeaker_state

    torch.manual_seed(seed)
    theirs = TheirWeSpeaker().eval()
    ours = WeSpeakerResNet34()
    load_wespeaker_state(ours, theirs.state_dict(), source="pyannote's WeSpeakerResNet34")
    return ours.eval(), theirs


def random_plda(folder: Path, dimension: int = 256, lda_dimension: int = 128):
    """pyannote's PLDA with random transforms: SpeakerDiarization 4.0.7 loads one always,
    agglomerative and oracle clustering never use it (tests/fixtures/
    make_pipeline_parity_reference.py uses this one too)."""
    from pyannote.audio.core.plda import PLDA

    rng = np.random.default_rng(0)
    np.savez(folder / "xvec_transform.npz", mean1=rng.normal(size=dimension),
             mean2=rng.normal(size=lda_dimension),
             lda=rng.normal(size=(dimension, lda_dimension)))
    np.savez(folder / "plda.npz", mu=rng.normal(size=lda_dimension),
             tr=np.eye(lda_dimension) + 0.01 * rng.normal(size=(lda_dimension, lda_dimension)),
             psi=rng.uniform(0.5, 2.0, size=lda_dimension))
    return PLDA.from_pretrained(str(folder))


def pyannote_pipeline(checkpoint: Path, embedder, batch_size: int, scratch: Path):
    """pyannote's SpeakerDiarization with agglomerative clustering and our hyperparameters."""
    from pyannote.audio import Model
    from pyannote.audio.pipelines import SpeakerDiarization

    from eval.clustering import MIN_CLUSTER_SIZE, THRESHOLD

    pipeline = SpeakerDiarization(
        segmentation=Model.from_pretrained(str(checkpoint)), embedding=embedder,
        embedding_exclude_overlap=True, plda=random_plda(scratch),
        clustering="AgglomerativeClustering", segmentation_batch_size=batch_size,
        embedding_batch_size=batch_size)
    pipeline.instantiate({"segmentation": {"min_duration_off": 0.0},
                          "clustering": {"method": "centroid", "threshold": THRESHOLD,
                                         "min_cluster_size": MIN_CLUSTER_SIZE}})
    return pipeline


# --- the two runs -----------------------------------------------------------------------
class Ours:
    """avdiar's full pipeline as `run.py infer` runs it (eval/infer_cli.py), each stage's
    wall seconds kept per call."""

    def __init__(self, segmentation, embedder, batch_size: int):
        self.segmentation, self.embedder, self.batch_size = segmentation, embedder, batch_size
        self.stages: Dict[str, List[float]] = defaultdict(list)

    def __call__(self, waveform: torch.Tensor):
        from eval.embeddings import window_embeddings
        from eval.inference import infer_file
        from eval.pipeline import ClusteringOptions, diarize

        started = time.perf_counter()
        windows = infer_file(self.segmentation, waveform, step_ratio=0.1,
                             batch_size=self.batch_size, device=torch.device("cpu"), amp="off")
        segmented = time.perf_counter()
        vectors = window_embeddings(self.embedder, waveform, windows,
                                    batch_size=self.batch_size, device=torch.device("cpu"))
        embedded = time.perf_counter()
        annotation = diarize(windows, uri="bench", embeddings=vectors,
                             options=ClusteringOptions())
        done = time.perf_counter()
        for stage, seconds in zip(STAGES, (segmented - started, embedded - segmented,
                                           done - embedded)):
            self.stages[stage].append(seconds)
        return annotation, windows


class Theirs:
    """pyannote's pipeline on the waveform in memory; stage times read from its hook
    (the last call of each step: segmentation, embeddings, then the rest)."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.stages: Dict[str, List[float]] = defaultdict(list)

    def __call__(self, waveform: torch.Tensor):
        marks: Dict[str, float] = {}

        def hook(step, artefact, file=None, total=None, completed=None):
            marks[step] = time.perf_counter()

        started = time.perf_counter()
        output = self.pipeline({"uri": "bench", "waveform": waveform,
                                "sample_rate": SAMPLE_RATE}, hook=hook)
        done = time.perf_counter()
        segmented = marks.get("segmentation", started)
        embedded = marks.get("embeddings", segmented)
        for stage, seconds in zip(STAGES, (segmented - started, embedded - segmented,
                                           done - embedded)):
            self.stages[stage].append(seconds)
        return output.speaker_diarization


# --- checks -----------------------------------------------------------------------------
@torch.inference_mode()
def embedding_difference(ours, theirs, waveform: torch.Tensor, windows, count: int = 4):
    """(max |ours - theirs|, max |theirs|) of the embeddings of the first `count` windows'
    local speakers that have frames, each from its window and speaker mask as the pipelines
    pool them (frame weights at the segmentation model's frame rate)."""
    window_samples = int(round(windows.window_s * SAMPLE_RATE))
    pairs = [(w, k) for w in range(len(windows.activations))
             for k in range(windows.activations.shape[2])
             if windows.activations[w, :, k].sum() > 0][:count]
    if not pairs:
        pairs = [(0, 0)]
    starts = np.rint(windows.chunk_starts_s * SAMPLE_RATE).astype(np.int64)
    padded = torch.nn.functional.pad(waveform, (0, int(starts.max()) + window_samples
                                                - waveform.shape[-1]))
    waves = torch.stack([padded[:, starts[w]:starts[w] + window_samples] for w, _ in pairs])
    weights = torch.from_numpy(np.stack([windows.activations[w, :, k] for w, k in pairs]))
    mine, yours = ours(waves, weights=weights), theirs(waves, weights=weights)
    return float((mine - yours).abs().max()), float(yours.abs().max())


def der(reference, hypothesis, duration_s: float) -> float:
    """DER % of `hypothesis` against `reference` over [0, duration_s], collar 0, overlap
    scored, speakers matched optimally."""
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
    return 100.0 * metric(reference, hypothesis, uem=Timeline([Segment(0.0, duration_s)]))


def _speech_s(annotation) -> float:
    return annotation.get_timeline().support().duration()


def stage_table(ours: Dict[str, List[float]], theirs: Dict[str, List[float]],
                audio_s: float) -> str:
    lines = ["| stage | ours median s | ours RTF | pyannote median s | pyannote RTF | "
             "ours / pyannote |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for stage in STAGES:
        mine, yours = statistics.median(ours[stage]), statistics.median(theirs[stage])
        lines.append(f"| {stage} | {mine:.2f} | {mine / audio_s:.4f} | {yours:.2f} | "
                     f"{yours / audio_s:.4f} | {mine / max(yours, 1e-9):.2f}x |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", default=None,
                        help="audio file (default: pyannote's sample.wav from the weights cache)")
    parser.add_argument("--minutes", type=float, default=0.0,
                        help="repeat the audio and cut it to this many minutes (0: as is)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="segmentation and embedding batch size, both sides")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side, in turns")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per side first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random embedder")
    parser.add_argument("--out", default=None, help="also write the Markdown report here")
    args = parser.parse_args()
    _require_pyannote()
    torch.set_num_threads(args.threads)
    import pyannote.audio

    from core import load_pretrained

    sample = args.audio is None
    audio = str(_cached("pyannote/sample.wav")) if sample else args.audio
    checkpoint = _cached("pyannote/segmentation-3.0")
    waveform = load_audio(audio, args.minutes)
    audio_s = waveform.shape[-1] / SAMPLE_RATE
    header = (f"{timing.machine_line(threads=args.threads)}; pyannote.audio "
              f"{pyannote.audio.__version__}")
    print(header, flush=True)
    print(f"audio: {audio}{f', repeated to {args.minutes:g} min' if args.minutes > 0 else ''}"
          f" ({audio_s:.1f} s)", flush=True)

    ours_embedder, their_embedder = embedders(args.seed)
    ours = Ours(load_pretrained(str(checkpoint)).eval(), ours_embedder, args.batch_size)
    with tempfile.TemporaryDirectory() as scratch:
        theirs = Theirs(pyannote_pipeline(checkpoint, their_embedder, args.batch_size,
                                          Path(scratch)))
        mine, windows = ours(waveform)           # the checks' runs double as warm-up
        yours = theirs(waveform)
        largest, scale = embedding_difference(ours_embedder, their_embedder, waveform, windows)
        agreement = der(yours, mine, audio_s)
        checks = [f"embedder: max |ours - pyannote| = {largest:.2e} (embeddings up to "
                  f"{scale:.2f}), 4 window/speaker masks",
                  f"diarization: DER of ours against pyannote's = {agreement:.3f} % "
                  f"(ours {len(mine.labels())} speakers, {_speech_s(mine):.1f} s of speech; "
                  f"pyannote {len(yours.labels())} speakers, {_speech_s(yours):.1f} s)"]
        if sample and args.minutes <= 0:
            from pyannote.database.util import load_rttm

            reference = load_rttm(str(_cached("pyannote/sample.rttm")))["sample"]
            checks.append(f"DER against sample.rttm (random embedder): ours "
                          f"{der(reference, mine, audio_s):.2f} %, pyannote "
                          f"{der(reference, yours, audio_s):.2f} %")
        print("\n".join(checks), flush=True)
        for stages in (ours.stages, theirs.stages):
            stages.clear()
        timed = timing.in_turns({"ours": lambda: ours(waveform),
                                 "pyannote": lambda: theirs(waveform)},
                                args.repeats, max(args.warmup - 1, 0), verbose=True)
    for stages in (ours.stages, theirs.stages):  # the untimed warm-up runs come first
        for stage in STAGES:
            stages[stage] = stages[stage][-args.repeats:]
    ratio = timing.ratio(timed, "ours", "pyannote")
    rtf = {name: timed[name].median / audio_s for name in timed}
    report = "\n\n".join([
        "## Full-pipeline real-time factor: avdiar vs pyannote.audio", header,
        f"command: `python -m bench.pipeline_rtf {' '.join(sys.argv[1:])}`",
        f"audio: {Path(audio).name}, {audio_s:.1f} s; batch size {args.batch_size} both sides "
        f"(segmentation windows; embedding: ResNet passes); {args.repeats} timed runs per "
        f"side in turns after {args.warmup} warm-up",
        "\n".join(f"- {line}" for line in checks),
        timing.summary(timed, baseline="pyannote"),
        f"RTF (median wall / audio duration): ours {rtf['ours']:.4f}, pyannote "
        f"{rtf['pyannote']:.4f}; ours / pyannote = {ratio:.3f}x (target <= 0.5x: "
        f"{'met' if ratio <= 0.5 else 'not met'})",
        stage_table(ours.stages, theirs.stages, audio_s)])
    print("\n" + report + "\n")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
