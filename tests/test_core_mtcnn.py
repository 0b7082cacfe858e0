"""core.mtcnn: facenet-pytorch's weights by key table, boxes equal to its MTCNN.detect."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from core.mtcnn import KEYS, load_mtcnn, map_keys, nms
from core.weights import KNOWN, cached, fetch_from_wheel

FIXTURES = Path(__file__).parent / "fixtures"
CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "real" / "av" / "interview.mp4"


def mtcnn_paths(tmp_root: Path):
    """{"pnet": path, ...} from the weights cache, or from a facenet-pytorch wheel already in
    $AVDIAR_WHEELS (extracted under tmp_root); None when neither has them (never downloads)."""
    names = ["mtcnn/pnet", "mtcnn/rnet", "mtcnn/onet"]
    found = {name: cached(name) for name in names}
    if all(found.values()):
        return {n.split("/")[1]: str(p) for n, p in found.items()}
    wheels = os.environ.get("AVDIAR_WHEELS")
    if wheels and any(Path(wheels).glob("facenet_pytorch-2.6.0-*.whl")):
        got = fetch_from_wheel([KNOWN[n] for n in names], root=tmp_root, wheel_dir=Path(wheels),
                               log=lambda line: None)
        return {n.split("/")[1]: str(p) for n, p in got.items()}
    return None


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    paths = mtcnn_paths(tmp_path_factory.mktemp("mtcnn"))
    if paths is None:
        pytest.skip("MTCNN weights neither cached nor in $AVDIAR_WHEELS (run "
                    "`python -c 'from core.weights import ensure; ensure(\"mtcnn/pnet\")'`)")
    return load_mtcnn(paths)


@pytest.mark.skipif(not CLIP.is_file(), reason="../shared/real/av/interview.mp4 absent")
def test_boxes_equal_facenet_pytorch(detector):
    import av

    reference = json.loads((FIXTURES / "mtcnn_reference.json").read_text())
    cases = {(c["frame"], c["width"]): c for c in reference["cases"]}
    assert reference["settings"]["min_face_size"] == detector.min_face_size
    with av.open(str(CLIP)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            for (at, width), case in cases.items():
                if at != index:
                    continue
                image = frame.to_ndarray(format="rgb24", width=width, height=case["height"])
                boxes = detector.detect(image)
                expected = np.array(case["boxes"])
                assert len(boxes) == len(expected) == 2, (index, width, boxes)
                np.testing.assert_allclose(boxes[:, :4], expected, atol=0.05)
                np.testing.assert_allclose(boxes[:, 4], case["probabilities"], atol=1e-5)
            if index >= max(c["frame"] for c in reference["cases"]):
                break


def test_no_face_in_noise(detector):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (180, 320, 3), dtype=np.uint8)
    assert detector.detect(image).shape[1] == 5
    assert detector.detect(np.zeros((120, 160, 3), np.uint8)).shape == (0, 5)
    with pytest.raises(ValueError, match="RGB"):
        detector.detect(np.zeros((120, 160), np.uint8))


def test_key_tables_cover_the_checkpoints():
    for name, table in KEYS.items():
        state = {f"{old}.weight": torch.zeros(1) for old in table}
        mapped = map_keys(name, state)
        assert set(mapped) == {f"{new}.weight" for new in table.values()}
    with pytest.raises(KeyError, match="conv9"):
        map_keys("pnet", {"conv9.weight": torch.zeros(1)})


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.5, 0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.9).tolist() == [1, 2, 3, 0]
    # by the smaller area: box 3 lies inside box 0, overlap 1.0 > 0.7
    assert nms(boxes[[0, 3]], scores[[0, 3]], 0.7, by_smaller=True).tolist() == [1]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []
