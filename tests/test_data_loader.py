"""Training and validation loaders: batch contract, seeding, exact resume, sharding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data import (
    build_index,
    load_protocol,
    make_train_loader,
    make_validation_loader,
    read_chunk,
    validation_chunks,
)


@pytest.fixture(scope="module")
def train_index(synthetic_db):
    protocol = load_protocol(synthetic_db.protocol, [str(synthetic_db.database)])
    return build_index(protocol, "train", video_dir=synthetic_db.video_dir, progress=False)


@pytest.fixture(scope="module")
def dev_index(synthetic_db):
    protocol = load_protocol(synthetic_db.protocol, [str(synthetic_db.database)])
    return build_index(protocol, "development", video_dir=synthetic_db.video_dir, progress=False)


def _loader(index, **kwargs):
    options = dict(duration_s=5.0, batch_size=3, seed=7, batches_per_epoch=4, num_workers=0)
    options.update(kwargs)
    return make_train_loader(index, **options)


def _starts(loader):
    return [(tuple(b["uri"]), tuple(b["start_s"].tolist())) for b in loader]


def test_batch_contract(train_index):
    batch = next(iter(_loader(train_index, duration_s=10.0)))
    assert batch["waveforms"].shape == (3, 1, 160000) and batch["waveforms"].dtype == torch.float32
    assert batch["video"].shape == (3, 250, 32) and batch["video"].dtype == torch.float32
    assert batch["video_mask"].shape == (3, 250) and batch["video_mask"].dtype == torch.bool
    assert batch["target"].shape == (3, 589, 3) and batch["target"].dtype == torch.float32
    assert batch["start_s"].dtype == torch.float64 and len(batch["uri"]) == 3
    assert torch.isfinite(batch["video"]).all() and batch["video_mask"].any()
    # every sample equals the chunk reader's output for its (uri, start)
    for b in range(3):
        chunk = read_chunk(train_index.find(batch["uri"][b]), float(batch["start_s"][b]), 10.0,
                           esize=32)
        assert torch.equal(chunk["waveform"], batch["waveforms"][b])
        assert torch.equal(chunk["video"], batch["video"][b])
        assert torch.equal(chunk["target"], batch["target"][b])
    # chunks lie inside annotated regions of at least 10 s
    for uri, start in zip(batch["uri"], batch["start_s"].tolist()):
        regions = train_index.find(uri).annotated
        assert any(s <= start and start + 10.0 <= e + 1e-9 for s, e in regions)


def test_seed_reproduces_and_workers_do_not_matter(train_index):
    reference = _starts(_loader(train_index))
    assert reference == _starts(_loader(train_index))
    assert reference == _starts(_loader(train_index, num_workers=2))
    assert reference != _starts(_loader(train_index, seed=8))
    assert len(set(reference)) == len(reference)  # batches of an epoch differ


def test_ranks_and_epochs_draw_different_chunks(train_index):
    rank0 = _starts(_loader(train_index, rank=0, world_size=2))
    rank1 = _starts(_loader(train_index, rank=1, world_size=2))
    assert not set(rank0) & set(rank1)
    loader = _loader(train_index)
    epoch0, epoch1 = _starts(loader), _starts(loader)  # a second pass is the next epoch
    assert not set(epoch0) & set(epoch1)
    assert epoch1 == _starts(_loader(train_index, epoch=1))


def test_start_batch_resumes_exactly(train_index):
    full = _starts(_loader(train_index, epoch=3))
    resumed = _loader(train_index, epoch=3, start_batch=2, num_workers=1)
    assert len(resumed) == 2 and _starts(resumed) == full[2:]
    resumed.set_epoch(3, start_batch=1)
    assert _starts(resumed) == full[1:]


def test_default_epoch_length(train_index):
    loader = make_train_loader(train_index, duration_s=5.0, batch_size=2, seed=0)
    total = sum(e - s for r in train_index for s, e in r.annotated if e - s >= 5.0)
    assert loader.batches_per_epoch == max(1, int(total / 5.0 / 2))
    loader = make_train_loader(train_index, duration_s=5.0, batch_size=2, seed=0, world_size=4)
    assert loader.batches_per_epoch == max(1, int(total / 5.0 / 2 / 4))


def test_validation_chunks_fixed_non_overlapping_sharded(dev_index):
    chunks = validation_chunks(dev_index, 5.0)
    assert [(r.uri, s) for r, s in chunks] == [(r.uri, s) for r, s in
                                               validation_chunks(dev_index, 5.0)]
    assert len(chunks) == 4 + 2 + 4  # 20 s files; the middle one has two 8 s regions
    for (r1, s1), (r2, s2) in zip(chunks, chunks[1:]):
        assert r1.uri != r2.uri or s2 >= s1 + 5.0
    shards = [validation_chunks(dev_index, 5.0, rank, 3) for rank in range(3)]
    merged = sorted((r.uri, s) for shard in shards for r, s in shard)
    assert merged == sorted((r.uri, s) for r, s in chunks)
    loader = make_validation_loader(dev_index, duration_s=5.0, batch_size=4)
    batches = list(loader)
    assert [len(b["uri"]) for b in batches] == [4, 4, 2]
    again = list(make_validation_loader(dev_index, duration_s=5.0, batch_size=4, num_workers=1))
    assert all(torch.equal(a["waveforms"], b["waveforms"]) for a, b in zip(batches, again))
    assert np.allclose(batches[0]["start_s"].numpy(), [s for _, s in chunks[:4]])


def _assert_same_batches(batches, reference):
    assert len(batches) == len(reference)
    for got, want in zip(batches, reference):
        assert got["uri"] == want["uri"]
        for name in ("waveforms", "video", "video_mask", "target", "start_s"):
            assert got[name].dtype == want[name].dtype and torch.equal(got[name], want[name])


def test_worker_batches_are_exact_and_survive_being_held(train_index):
    # 14 batches held at once: more than a worker's ring of slots, so the workers must
    # take fresh buffers instead of overwriting batches still in use
    reference = list(_loader(train_index, batches_per_epoch=14))
    _assert_same_batches(list(_loader(train_index, batches_per_epoch=14, num_workers=2)),
                         reference)
    _assert_same_batches(list(_loader(train_index, batches_per_epoch=14, num_workers=1,
                                      recycle=False)), reference)


def test_worker_slots_are_recycled_once_released(train_index):
    reference = list(_loader(train_index, batches_per_epoch=16))
    loader = _loader(train_index, batches_per_epoch=16, num_workers=1)
    for got, want in zip(loader, reference):  # each batch is dropped before the next but one
        _assert_same_batches([got], [want])
    uses = loader.dataset.ring.released & 0xFFFFFFFF  # generations: pid << 32 | uses
    assert 0 < int((uses > 0).sum()) < 16 and int(uses.max()) > 1


def test_other_audio_and_video_formats_read_as_float32(tmp_path, write_database):
    import soundfile as sf

    from data import make_batch
    from data.audio import is_pcm16, read_audio_into

    t = np.arange(16000 * 12) / 16000
    audio = {"pcm": (0.3 * np.sin(2 * np.pi * 220 * t), 16000),
             "flt": (0.3 * np.sin(2 * np.pi * 330 * t), 16000)}
    yml = write_database(tmp_path, audio, [("pcm", 0.0, 12.0, "A"), ("flt", 0.0, 12.0, "B")],
                         name="Formats.SpeakerDiarization.T")
    sf.write(tmp_path / "audio" / "flt.wav", 0.3 * np.sin(2 * np.pi * 330 * t), 16000,
             subtype="FLOAT")
    (tmp_path / "video").mkdir()
    np.save(tmp_path / "video" / "pcm.npy", np.full((300, 8), 0.1, dtype=np.float16))
    float32_video = np.full((300, 8), 0.1, dtype=np.float32)  # 0.1 is not a float16
    float32_video[40] = np.nan  # chunk frame 2 of a chunk from 1.5 s (file frame 38)
    np.save(tmp_path / "video" / "flt.npy", float32_video)
    protocol = load_protocol("Formats.SpeakerDiarization.T", [str(yml)])
    index = build_index(protocol, "train", video_dir=tmp_path / "video", progress=False)
    pcm, flt = index.find("pcm"), index.find("flt")
    assert is_pcm16(pcm) and not is_pcm16(flt)
    with pytest.raises(ValueError, match="16-bit PCM"):
        read_audio_into(np.zeros(16000, dtype=np.int16), flt, 0.0)
    chunks = [(pcm.index, 1.5), (flt.index, 1.5), (pcm.index, 9.0)]  # the last one runs out
    batch = make_batch(index, chunks, 5.0, esize=8)
    for b, (position, start_s) in enumerate(chunks):
        chunk = read_chunk(index[position], start_s, 5.0, esize=8)
        for name, key in (("waveforms", "waveform"), ("video", "video"),
                          ("video_mask", "video_mask"), ("target", "target")):
            assert torch.equal(batch[name][b], chunk[key]), (name, b)
    assert batch["video"][1, 0, 0] == torch.tensor(0.1)  # float32 embeddings kept exact
    assert not batch["video_mask"][1, 2] and batch["video_mask"][1, 3]
    assert batch["waveforms"][2, 0, 16000 * 3:].abs().max() == 0  # zero past the end
