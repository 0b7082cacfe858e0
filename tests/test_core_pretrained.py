"""load_pretrained: pyannote-format checkpoints, key table errors, safety, the Hub path."""

import os
import pickle
import zipfile

import pytest
import torch

import core.hub
from core import load_pretrained
from core.backbone import PyanNet
from core.pretrained import CheckpointMismatchError
from core.safe_pickle import CorruptCheckpointError, UnsafeCheckpointError, load_checkpoint_file
from tests.pyannote_format import save_pyannote_checkpoint

HP = dict(sincnet={"stride": 10},
          lstm={"hidden_size": 24, "num_layers": 2, "bidirectional": True, "dropout": 0.0},
          linear={"hidden_size": 16, "num_layers": 2})


def _perturbed(**kwargs) -> PyanNet:
    torch.manual_seed(0)
    model = PyanNet(**HP, **kwargs).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model


@pytest.fixture
def powerset_ckpt(tmp_path):
    model = _perturbed()
    path = tmp_path / "pytorch_model.bin"
    save_pyannote_checkpoint(model.state_dict(), str(path), duration_s=5.0,
                             hparams={**HP, "lstm": {**HP["lstm"], "monolithic": True}})
    return model, path


def test_powerset_checkpoint_round_trip(powerset_ckpt):
    reference, path = powerset_ckpt
    model = load_pretrained(str(path))
    x = torch.randn(2, 1, 24000)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert model.duration_s == 5.0 and model.powerset is not None and not model.training


def test_folder_holding_pytorch_model_bin(powerset_ckpt):
    reference, path = powerset_ckpt
    model = load_pretrained(str(path.parent))
    assert torch.equal(model.classifier.weight, reference.classifier.weight)


def test_multilabel_checkpoint(tmp_path):
    reference = _perturbed(num_speakers=4, powerset_max=0)
    path = tmp_path / "ml.bin"
    save_pyannote_checkpoint(reference.state_dict(), str(path), num_speakers=4, powerset_max=0,
                             hparams=HP)
    model = load_pretrained(str(path))
    assert model.powerset is None and model.num_classes == 4
    x = torch.randn(1, 1, 16000)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def test_non_monolithic_lstm_maps_onto_one_lstm(tmp_path):
    reference = _perturbed()
    state = {}
    for key, value in reference.state_dict().items():
        if key.startswith("lstm."):  # lstm.weight_ih_l1_reverse -> lstm.1.weight_ih_l0_reverse
            name = key[len("lstm."):]
            tensor, _, rest = name.partition("_l")
            layer, _, direction = rest.partition("_")
            key = f"lstm.{layer}.{tensor}_l0" + (f"_{direction}" if direction else "")
        state[key] = value
    path = tmp_path / "split.bin"
    save_pyannote_checkpoint(state, str(path),
                             hparams={**HP, "lstm": {**HP["lstm"], "monolithic": False}})
    model = load_pretrained(str(path))
    x = torch.randn(1, 1, 16000)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def test_unused_and_unfilled_keys_are_all_named(tmp_path):
    state = _perturbed().state_dict()
    state["extra.weight"] = torch.zeros(3)
    del state["linear.1.bias"]
    path = tmp_path / "bad.bin"
    save_pyannote_checkpoint(state, str(path), hparams=HP)
    with pytest.raises(CheckpointMismatchError) as error:
        load_pretrained(str(path))
    assert "extra.weight" in str(error.value) and "linear.1.bias" in str(error.value)
    assert str(path) in str(error.value)


def test_wrong_shape_names_key_and_both_shapes(tmp_path):
    state = _perturbed().state_dict()
    state["classifier.bias"] = torch.zeros(5)
    path = tmp_path / "shape.bin"
    save_pyannote_checkpoint(state, str(path), hparams=HP)
    with pytest.raises(CheckpointMismatchError, match=r"classifier.bias.*\(5,\).*\(7,\)"):
        load_pretrained(str(path))


def test_restricted_unpickler_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.bin"
    torch.save({"state_dict": {}, "payload": Evil()}, str(path))
    with pytest.raises(UnsafeCheckpointError, match="system"):
        load_pretrained(str(path))
    assert not marker.exists()


def test_restricted_unpickler_refuses_any_unknown_class(tmp_path):
    path = tmp_path / "odd.bin"
    torch.save({"state_dict": {}, "obj": zipfile.ZipInfo("x")}, str(path))
    with pytest.raises(UnsafeCheckpointError, match="zipfile.ZipInfo"):
        load_checkpoint_file(str(path))


def test_truncated_checkpoint_is_named(powerset_ckpt, tmp_path):
    _, path = powerset_ckpt
    data = path.read_bytes()
    broken = tmp_path / "truncated.bin"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match="truncated.bin"):
        load_pretrained(str(broken))
    text = tmp_path / "text.bin"
    text.write_text("not a checkpoint")
    with pytest.raises(CorruptCheckpointError, match="text.bin"):
        load_pretrained(str(text))


def test_legacy_pickle_is_refused_not_executed(tmp_path):
    path = tmp_path / "legacy.bin"
    path.write_bytes(pickle.dumps({"state_dict": {}}))
    with pytest.raises(CorruptCheckpointError, match="zip format"):
        load_pretrained(str(path))


def test_fusion_models_start_from_the_audio_model(powerset_ckpt):
    reference, path = powerset_ckpt
    x = torch.randn(2, 1, 16000)
    video = torch.randn(2, 25, 32)
    mask = torch.rand(2, 25) > 0.3
    with torch.no_grad():
        expected = reference(x)
        for model_id in (6, 7, 8):
            model = load_pretrained(str(path), model=model_id, esize=32)
            out = model(x, video=video, video_mask=mask)
            assert torch.allclose(out, expected, atol=1e-5), model_id


def test_hub_id_reaches_hf_hub_download(powerset_ckpt, monkeypatch):
    _, path = powerset_ckpt
    calls = []

    def fake_download(repo_id, filename, revision=None, token=None):
        calls.append((repo_id, filename, revision, token))
        return str(path)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    monkeypatch.setenv("HF_TOKEN", "env-token")
    load_pretrained("pyannote/segmentation-3.0@abc123")
    assert calls[-1] == ("pyannote/segmentation-3.0", "pytorch_model.bin", "abc123", "env-token")
    load_pretrained("pyannote/segmentation-3.0", revision="v2", token="given")
    assert calls[-1] == ("pyannote/segmentation-3.0", "pytorch_model.bin", "v2", "given")


def test_hub_falls_back_to_safetensors_name(monkeypatch, tmp_path):
    from huggingface_hub.utils import EntryNotFoundError

    asked = []

    def fake_download(repo_id, filename, revision=None, token=None):
        asked.append(filename)
        if filename == "pytorch_model.bin":
            raise EntryNotFoundError("missing")
        return str(tmp_path / filename)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    path = core.hub.resolve_checkpoint("someone/model")
    assert asked == ["pytorch_model.bin", "model.safetensors"]
    assert path.endswith("model.safetensors")


def test_conflicting_revisions_are_an_error():
    with pytest.raises(ValueError, match="revision"):
        core.hub.resolve_checkpoint("pyannote/segmentation-3.0@a", revision="b")


def test_not_a_path_nor_a_hub_id():
    with pytest.raises(FileNotFoundError, match="neither a file"):
        load_pretrained("/no/such/checkpoint.bin")


def test_safetensors_checkpoint(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    reference = _perturbed()
    folder = tmp_path / "repo"
    folder.mkdir()
    safetensors.save_file({k: v.contiguous() for k, v in reference.state_dict().items()},
                          str(folder / "model.safetensors"))
    model = load_pretrained(str(folder))
    x = torch.randn(1, 1, 16000)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
