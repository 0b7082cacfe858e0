"""`run.py prepare ava-avd` on a miniature AVA-AVD-shaped folder built from the real clip, then
the seed's training command on what it wrote (data.ava_avd)."""

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import run
from tests.video_helpers import ASD_WEIGHTS, CLIP, CLIP_FACES, skip_without_frontend

PROTOCOL = "AVA-AVD.SpeakerDiarization.data"
VIDEO_A, VIDEO_B = "AAAAAAAAAAA", "BB-bbbbb_BB"
# clip -> (start, end) in seconds of its video; the turns alternate two speakers
CLIPS = {f"{VIDEO_A}_c_01": (1.0, 5.0), f"{VIDEO_A}_c_02": (6.0, 10.0),
         f"{VIDEO_B}_c_01": (2.0, 6.0), f"{VIDEO_B}_c_02": (11.0, 15.0)}
SPLIT = {"train": [f"{VIDEO_A}_c_01", f"{VIDEO_A}_c_02", "CCCCCCCCCCC_c_01"],
         "val": [f"{VIDEO_B}_c_01"], "test": [f"{VIDEO_B}_c_02"]}


def _remux(source: Path, target: Path) -> None:
    """Copy `source`'s streams into another container (mp4 -> mkv) without re-encoding."""
    import av

    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)


def build_layout(root: Path) -> Path:
    """dataset/ with split/, rttms/, tracks/ (video A only) and videos/ (A.mp4, B.mkv; the
    train list also names a clip whose video is missing)."""
    dataset = root / "dataset"
    for sub in ("split", "rttms", "tracks", "videos"):
        (dataset / sub).mkdir(parents=True)
    for name, clips in SPLIT.items():
        (dataset / "split" / f"{name}.list").write_text("\n".join(clips) + "\n")
    offsets = [f"{clip} {CLIPS[clip][0]}" for clip in CLIPS if clip != f"{VIDEO_B}_c_02"]
    (dataset / "split" / "offsets.txt").write_text("\n".join(offsets) + "\n")
    for clip, (start, end) in {**CLIPS, "CCCCCCCCCCC_c_01": (0.0, 4.0)}.items():
        edges = np.linspace(start, end, 5)
        lines = []
        for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
            duration = b - a if k == 3 else b - a - 0.1         # the last turn ends the clip
            lines.append(f"SPEAKER {clip} 1 {a:.2f} {duration:.2f} <NA> <NA> spk{k % 2 + 1} "
                         "<NA> <NA>")
        (dataset / "rttms" / f"{clip}.rttm").write_text("\n".join(lines) + "\n")
    rows = []
    for t in np.arange(0.0, 17.0, 0.05):
        for k, (x1, y1, x2, y2) in enumerate(CLIP_FACES):
            rows.append(f"{VIDEO_A},{t:.2f},{x1 / 1280:.4f},{y1 / 720:.4f},{x2 / 1280:.4f},"
                        f"{y2 / 720:.4f},NOT_SPEAKING,{VIDEO_A}_0000_0017:{k + 1},spk{k + 1}")
    (dataset / "tracks" / f"{VIDEO_A}-activespeaker.csv").write_text("\n".join(rows) + "\n")
    (dataset / "videos" / f"{VIDEO_A}.mp4").symlink_to(CLIP)
    _remux(CLIP, dataset / "videos" / f"{VIDEO_B}.mkv")
    return dataset


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    patch = skip_without_frontend(tmp_path_factory.mktemp("weights"))
    root = tmp_path_factory.mktemp("ava")
    dataset = build_layout(root)
    out = root / "prepared"
    status = run.main(["prepare", "ava-avd", str(dataset), "--out", str(out), "--workers", "2",
                       "--asd-weights", str(ASD_WEIGHTS), "--no-progress"])
    yield dataset, out, status
    patch.undo()


def test_prepare_writes_audio_video_and_a_database(prepared, capsys):
    dataset, out, status = prepared
    assert status == 0
    from data.video_io import read_audio

    for clip, (start, end) in CLIPS.items():
        waveform, rate = sf.read(out / "audio" / f"{clip}.wav", dtype="float32")
        assert rate == 16000 and len(waveform) == round((end - start) * 16000)
        video_file = next((dataset / "videos").glob(clip.rsplit("_c_", 1)[0] + ".*"))
        full = read_audio(video_file, 16000)
        lo, hi = int(start * 16000) + 1000, int(end * 16000) - 1000
        # the clip's audio is the video's from `start`, to within 1 ms (mkv stores times in ms)
        best = max(np.corrcoef(waveform[1000:-1000], full[lo + lag:hi + lag])[0, 1]
                   for lag in range(-16, 17))
        assert best > 0.99, clip
        video = np.load(out / "video" / f"{clip}.npy")
        assert video.shape == (100, 384)
        speaking = np.load(out / "video" / f"{clip}.speaking.npy")
        assert (~np.isnan(speaking[:, :2])).all(axis=1).mean() >= 0.95, clip
    info = (out / "video" / f"{VIDEO_A}_c_01.tracks.json").read_text()
    assert '"tracks_from": "given"' in info and f"{VIDEO_A}_0000_0017:1" in info
    assert '"tracks_from": "mtcnn"' in (out / "video" / f"{VIDEO_B}_c_01.tracks.json").read_text()
    assert (out / "lists" / "train.lst").read_text().split() == SPLIT["train"][:2]  # C: no video
    rttm = (out / "rttm" / "test.rttm").read_text().splitlines()
    assert rttm[0].split()[1:5] == [f"{VIDEO_B}_c_02", "1", "0.000", "0.900"]  # from its start
    assert (out / "uem" / "development.uem").read_text().split() == [
        f"{VIDEO_B}_c_01", "1", "0.000", "4.000"]


def test_the_database_loads_with_its_video(prepared):
    from data.index import build_index
    from data.protocol import load_protocol

    _, out, status = prepared
    assert status == 0
    protocol = load_protocol(PROTOCOL, [str(out / "database.yml")])
    index = build_index(protocol, "train", video_dir=out / "video", esize=384, progress=False,
                        database_files=[str(out / "database.yml")])
    assert [r.uri for r in index] == SPLIT["train"][:2] and not index.missing_video
    assert {r.video_frames for r in index} == {100}


def test_a_second_run_resumes(prepared, capsys):
    dataset, out, status = prepared
    assert status == 0
    before = {p.name: p.stat().st_mtime_ns for p in (out / "video").glob("*.npy")}
    assert run.main(["prepare", "ava-avd", str(dataset), "--out", str(out),
                     "--asd-weights", str(ASD_WEIGHTS), "--no-progress"]) == 0
    # the four clips are skipped; the one whose video is missing is tried again
    assert "4 of 5 clips already prepared" in capsys.readouterr().out
    assert before == {p.name: p.stat().st_mtime_ns for p in (out / "video").glob("*.npy")}


def test_a_folder_without_the_layout_is_refused(tmp_path, capsys):
    assert run.main(["prepare", "ava-avd", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no split/ folder" in capsys.readouterr().err


@pytest.mark.slow
def test_the_seed_command_trains_model_6_and_evaluates(prepared, tmp_path, monkeypatch):
    monkeypatch.delenv("AVDIAR_STOP_FILE", raising=False)
    _, out, status = prepared
    assert status == 0
    argv = ["--groundtruths", "test", "--model", "6", "--esize", "384", "--project", "both13",
            "--name", "model_6_late_fusion", "--cdir", str(tmp_path), "--epochs", "50",
            "--protocol", PROTOCOL, "--database", str(out / "database.yml"),
            "--video-dir", str(out / "video"),
            # a tiny model, two steps (the real run adds --finetune from segmentation-3.0)
            "--duration", "2", "--batch-size", "2", "--lstm-hidden", "8", "--lstm-layers", "1",
            "--lstm-dropout", "0", "--linear-hidden", "8", "--d-model", "16",
            "--fusion-layers", "1", "--fusion-heads", "2", "--max-steps", "2",
            "--workers", "0", "--device", "cpu"]
    monkeypatch.setattr(sys, "argv", ["run.py"] + argv)
    assert run.main(argv) == 0
    experiment = tmp_path / "both13" / "model_6_late_fusion"
    assert (experiment / "checkpoints" / "best.pt").is_file()
    report = (experiment / "eval" / "report.md").read_text()
    assert f"{VIDEO_B}_c_02" in report or "DER" in report
