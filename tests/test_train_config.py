"""Config dataclass and the command line (train/config.py, train/cli.py)."""

import argparse
import json

import pytest

from train import cli
from train.config import Config


def parse(argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_old_script_flags_work_unchanged(tmp_path):
    args = parse(["--model", "6", "--finetune", "--esize", "384", "--project", "P",
                  "--name", "N", "--cdir", str(tmp_path), "--epochs", "50",
                  "--protocol", "X.SpeakerDiarization.Y", "--groundtruths", "test",
                  "--freeze-lstm"])
    config = Config.from_args(args)
    assert config.model == "late" and config.finetune and config.esize == 384
    assert config.checkpoint == "pyannote/segmentation-3.0"
    assert config.experiment_dir == tmp_path / "P" / "N"
    assert config.freeze == ["lstm"] and config.groundtruths == "test"
    assert config.resume == "auto" and config.batch_size == 32 and config.lr == 1e-3


@pytest.mark.parametrize("given,name", [("0", "audio"), ("audio", "audio"), ("7", "early"),
                                        ("HYBRID", "hybrid"), ("8", "hybrid")])
def test_model_aliases(given, name):
    assert Config(model=given).model == name


def test_every_config_field_has_a_flag():
    args = parse([])
    fields = set(Config().to_dict())
    assert fields <= set(vars(args)), fields - set(vars(args))


def test_save_and_load_round_trip_without_token(tmp_path):
    config = Config(model="8", esize=16, freeze="lstm,linear", hf_token="secret",
                    cdir=str(tmp_path), amp="bf16", grad_clip=None)
    path = config.save()
    assert path == tmp_path / "avdiar" / "hybrid-scratch-e16-frz-lstm-linear" / "config.json"
    data = json.loads(path.read_text())
    assert data["hf_token"] is None and data["freeze"] == ["lstm", "linear"]
    again = Config.load(path)
    assert again.to_dict() == {**config.to_dict(), "hf_token": None}


@pytest.mark.parametrize("kwargs,flag", [
    ({"amp": "fp8"}, "--amp"), ({"freeze": "lstm,encoder"}, "--freeze"),
    ({"model": "9"}, "--model"), ({"batch_size": 0}, "--batch-size"),
    ({"modality_dropout": 1.0}, "--modality-dropout"), ({"scheduler": "step"}, "--scheduler"),
    ({"locality_tau": 0.0}, "--locality-tau")])
def test_bad_settings_name_the_flag(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        Config(**kwargs)


def test_cli_main_reports_bad_flags_with_status_2(capsys):
    args = parse(["--amp", "off", "--model", "5"])
    assert cli.main(args) == 2
    assert "--model" in capsys.readouterr().err


def test_grad_clip_zero_means_none():
    assert parse(["--grad-clip", "0"]).grad_clip is None
    assert parse(["--grad-clip", "1.5"]).grad_clip == 1.5


def test_locality_tau_reaches_the_co_attention():
    from train.loop import make_model

    config = Config(model="late", esize=16, lstm_hidden=8, lstm_layers=1, linear_hidden=8,
                    locality_tau=0.2)
    assert make_model(config).coattention.locality_tau_s == 0.2
    assert make_model(Config(model="late", esize=16, lstm_hidden=8, lstm_layers=1,
                             linear_hidden=8)).coattention.locality_tau_s is None


def test_learned_locality_flag_reaches_the_model():
    from train.loop import make_model

    small = dict(model="early", esize=16, lstm_hidden=8, lstm_layers=1, linear_hidden=8)
    assert parse(["--no-learned-locality"]).learned_locality is False
    assert parse([]).learned_locality is None
    assert make_model(Config(**small)).coattention.learned_locality
    assert not make_model(Config(**small, learned_locality=False)).coattention.learned_locality
    with pytest.raises(ValueError, match="--learned-locality"):
        Config(**small, learned_locality=True, locality_tau=0.2).validate()


def test_video_centering_flag_reaches_the_model():
    from train.loop import make_model

    small = dict(model="hybrid", esize=16, lstm_hidden=8, lstm_layers=1, linear_hidden=8)
    assert parse(["--no-video-centering"]).video_centering is False
    assert parse([]).video_centering is None
    assert make_model(Config(**small)).video_centering is True
    assert make_model(Config(**small, video_centering=False)).video_centering is False
