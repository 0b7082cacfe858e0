"""`run.py eval --clustering oracle` scores what pyannote.audio 4.0.7's own pipeline scores.

The reference DERs (tests/fixtures/pipeline_parity.json) were made by pyannote's
SpeakerDiarization pipeline with OracleClustering on the same real files and the same
real segmentation weights (tests/fixtures/make_pipeline_parity_reference.py). Here our
command line runs on those files and must land within 0.1 DER point of pyannote at
collars 0 and 0.25. Needs the real weights in avdiar's weights cache (core/weights.py);
the LibriSpeech conversation also needs ../shared/real.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import run
from core.weights import cached
from tests.fixtures import real_conversations

FIXTURE = Path(__file__).parent / "fixtures" / "pipeline_parity.json"
TOLERANCE = 0.1  # DER points
MODELS = {"segmentation-3.0": "pyannote/segmentation-3.0",
          "segmentation": "pyannote/segmentation"}


def test_oracle_matching_resolves_equal_costs_as_pyannote():
    """pyannote's `permutate`, as OracleClustering calls it, on 200 small random 0/1
    activities where equal costs are common: our matching picks the same pairs."""
    from eval.clustering import _match

    cases = json.loads(FIXTURE.read_text())["matching"]
    assert len(cases) == 200
    for case in cases:
        reference, local = np.array(case["reference"]), np.array(case["local"])
        permutation = [None] * reference.shape[1]
        for r, k in _match(reference, local):
            permutation[r] = k
        assert permutation == case["permutation"], case


def _needs(name):
    path = cached(name)
    if path is None:
        pytest.skip(f"{name} is not in the weights cache (fill it with "
                    f"core.weights.ensure({name!r}))")
    return path


def _loadable(checkpoint):
    from core.safe_pickle import UnsafeCheckpointError

    try:
        from core import load_pretrained

        load_pretrained(str(checkpoint))
    except UnsafeCheckpointError as error:
        pytest.skip(f"{checkpoint}: our loader refuses this checkpoint ({error})")


def _ours(checkpoint, rttm, audio_dir, out):
    args = run.build_parser().parse_args(
        ["eval", "--checkpoint", str(checkpoint), "--groundtruths", str(rttm),
         "--audio", str(audio_dir), "--clustering", "oracle", "--device", "cpu",
         "--out", str(out), "--plots", "0", "--no-progress"])
    assert args.func(args) == 0
    totals = json.loads((out / "report.json").read_text())["totals"]["oracle"]
    return {"0": totals["collar=0"]["der"], "0.25": totals["collar=0.25"]["der"]}


def _compare(ours, theirs):
    for collar in ("0", "0.25"):
        assert abs(ours[collar] - theirs[collar]) <= TOLERANCE, (
            f"collar {collar}: ours {ours[collar]:.3f} %, pyannote {theirs[collar]:.3f} %")


@pytest.mark.slow
@pytest.mark.parametrize("model", list(MODELS))
def test_sample_wav_scores_as_pyannote(model, tmp_path):
    checkpoint = _needs(MODELS[model])
    _loadable(checkpoint)
    wav, rttm = _needs("pyannote/sample.wav"), _needs("pyannote/sample.rttm")
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "sample.wav").symlink_to(wav)
    theirs = json.loads(FIXTURE.read_text())["models"][model]["sample"]["der"]
    _compare(_ours(checkpoint, rttm, tmp_path / "audio", tmp_path / "out"), theirs)


@pytest.mark.slow
@pytest.mark.parametrize("model", list(MODELS))
def test_librispeech_conversation_scores_as_pyannote(model, tmp_path):
    checkpoint = _needs(MODELS[model])
    if real_conversations.librispeech_root() is None:
        pytest.skip(f"{real_conversations.LIBRISPEECH} is absent (../shared/real)")
    _loadable(checkpoint)
    recipe = real_conversations.RECIPES[0]
    wav, rttm = real_conversations.write(recipe, tmp_path / "audio")
    reference = json.loads(FIXTURE.read_text())["models"][model][recipe.uri]
    samples = real_conversations.build(recipe)[0].astype(np.float32)
    assert hashlib.sha256(samples.tobytes()).hexdigest() == reference["sha256"], (
        f"{recipe.uri}: not the audio pyannote was given")
    _compare(_ours(checkpoint, rttm, tmp_path / "audio", tmp_path / "out"), reference["der"])
