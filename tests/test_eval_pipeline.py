"""The whole evaluation on a generated synthetic database with tiny models."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from core import build_model
from data.protocol import load_protocol
from data.synthetic import generate_database
from eval.evaluate import EvalOptions, evaluate

TINY = dict(lstm={"hidden_size": 16, "num_layers": 1, "bidirectional": True, "dropout": 0.0},
            linear={"hidden_size": 16, "num_layers": 1}, duration_s=5.0)
PNG = b"\x89PNG\r\n\x1a\n"


class TinyEmbedding(nn.Module):
    """Stand-in speaker embedding: masked mean of log spectra through a fixed projection."""

    dimension = 8
    min_num_samples = 400

    def __init__(self):
        super().__init__()
        self.project = nn.Linear(201, self.dimension)

    def forward(self, waveforms, weights=None):
        window = torch.hann_window(400, device=waveforms.device)  # evaluate may run on a GPU
        spec = torch.stft(waveforms[:, 0], 400, 160, window=window,
                          return_complex=True).abs().add(1e-5).log().transpose(1, 2)
        w = nn.functional.interpolate(weights[:, None].float(), size=spec.shape[1])[:, 0]
        pooled = (spec * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp(min=1e-8)
        return self.project(pooled)


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    yml = generate_database(root, files=2, minutes=0.3, eval_minutes=0.5, esize=16)
    return root, load_protocol("Synthetic.SpeakerDiarization.AV", [str(yml)])


@pytest.mark.slow
@pytest.mark.parametrize("model_id", ["audio", "late"])
def test_evaluate_writes_every_report(database, tmp_path, model_id):
    root, protocol = database
    torch.manual_seed(0)
    model = build_model(model_id, esize=16, **TINY)
    options = EvalOptions(out_dir=str(tmp_path), split="test", video_dir=str(root / "video"),
                          batch_size=8, step_ratio=0.5, progress=False, num_plots=2)
    summary = evaluate(model, protocol, options, embedding_model=TinyEmbedding())
    for name in ("test.rttm", "test.full.rttm", "test.oracle.rttm", "report.csv",
                 "report.md", "report.json"):
        assert (tmp_path / name).is_file(), name
        assert (tmp_path / name).stat().st_size > 0, name
    pngs = sorted((tmp_path / "timelines").glob("*.png"))
    assert len(pngs) == 2 and all(p.read_bytes()[:8] == PNG for p in pngs)
    for mode in ("full", "oracle"):
        for collar in ("collar=0", "collar=0.25"):
            der = summary["totals"][mode][collar]["der"]
            assert math.isfinite(der) and der >= 0.0
    markdown = (tmp_path / "report.md").read_text()
    assert "oracle clustering" in markdown and "full pipeline" in markdown
    assert json.loads((tmp_path / "report.json").read_text())["files"] == ["ts000", "ts001"]


def test_without_embeddings_reports_oracle_and_says_why(database, tmp_path):
    root, protocol = database
    model = build_model("audio", **TINY)
    options = EvalOptions(out_dir=str(tmp_path), split="test", batch_size=8, step_ratio=0.5,
                          progress=False, num_plots=0)
    summary = evaluate(model, protocol, options, embedding_model=None,
                       embedding_error="cannot load pyannote/wespeaker (offline)")
    assert "full" not in summary["totals"] and "oracle" in summary["totals"]
    assert "full pipeline skipped: cannot load" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "test.rttm").is_file()


def test_fusion_model_without_video_is_an_ablation_and_says_so(database, tmp_path):
    """No video folder: a warning, 'audio alone' in the report, and the fusion model's
    output is the audio path's (here different from its output with video, since the
    zero-initialised video projection is perturbed)."""
    root, protocol = database
    torch.manual_seed(0)
    model = build_model("late", esize=16, **TINY)
    with torch.no_grad():
        model.coattention.audio_out.weight.normal_()
    common = dict(split="test", batch_size=8, step_ratio=0.5, progress=False, num_plots=0,
                  clustering=("oracle",))
    with pytest.warns(UserWarning, match="no video folder was given"):
        alone = evaluate(model, protocol, EvalOptions(out_dir=str(tmp_path / "alone"), **common))
    both = evaluate(model, protocol, EvalOptions(out_dir=str(tmp_path / "both"),
                                                 video_dir=str(root / "video"), **common))
    assert alone["video_dir"] is None and both["video_dir"] == str(root / "video")
    assert "audio alone" in (tmp_path / "alone" / "report.md").read_text()
    assert alone["local"] != both["local"]


def test_video_of_another_width_than_the_models_esize_names_the_file(database, tmp_path):
    """The video width is checked against the model's own esize (what its checkpoint
    says), not against a flag: embeddings 16 wide, a model built for 8."""
    root, protocol = database
    model = build_model("late", esize=8, **TINY)
    with pytest.raises(ValueError, match=r"ts000\.npy: video embeddings have size 16, but "
                                         r"the model takes esize 8"):
        evaluate(model, protocol, EvalOptions(out_dir=str(tmp_path), video_dir=str(root / "video"),
                                              progress=False, num_plots=0,
                                              clustering=("oracle",)))


def test_oracle_on_reference_activations_scores_zero(database):
    """Local speakers cut from a synthetic file's reference: the oracle gives DER 0."""
    from core.receptive_field import frame_times
    from eval.files import protocol_files
    from eval.inference import WindowOutput, window_starts
    from eval.pipeline import diarize
    from eval.scoring import score

    _, protocol = database
    file = protocol_files(protocol, "test")[0]
    reference, uem = file["annotation"], file["annotated"]
    duration_s = uem.extent().end
    starts = window_starts(int(duration_s * 16000), 80000, 8000) / 16000
    times = frame_times(293).double().numpy()
    activations = np.zeros((len(starts), 293, 3), dtype=np.float32)
    for w, t0 in enumerate(starts):
        window = {label: np.zeros(293) for label in reference.labels()}
        for seg, _, label in reference.itertracks(yield_label=True):
            window[label][(t0 + times >= seg.start) & (t0 + times < seg.end)] = 1.0
        speaking = [lab for lab in window if window[lab].any()]
        speaking.sort(key=lambda lab: -window[lab].sum())
        for k, label in enumerate(sorted(speaking[:3], key=lambda lab: window[lab].argmax())):
            activations[w, :, k] = window[label]
    windows = WindowOutput(activations, activations, starts, 5.0, float(times[0]),
                           float(times[1] - times[0]), duration_s)
    hypothesis = diarize(windows, uri=file["uri"], reference=reference)
    refs, hyps, uems = {file["uri"]: reference}, {file["uri"]: hypothesis}, {file["uri"]: uem}
    # Turn boundaries fall between frame centres: half a frame step (8 ms) of error per
    # boundary without collar, nothing left with a 0.25 s collar.
    assert score(refs, hyps, uems, collar=0.25).total.der == pytest.approx(0.0, abs=1e-6)
    assert score(refs, hyps, uems, collar=0.0).total.der < 2.0
