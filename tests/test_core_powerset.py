"""Powerset classes, conversions and the permutations that speaker permutations induce."""

import itertools

import pytest
import torch

from core.powerset import Powerset


def test_class_order_for_segmentation_3_0():
    assert Powerset(3, 2).sets == ((), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2))
    assert Powerset(3, 2).num_classes == 7
    assert Powerset(4, 3).num_classes == 1 + 4 + 6 + 4
    assert Powerset(2, 1).num_classes == 3


def _all_patterns(num_speakers, max_set_size):
    for bits in itertools.product([0, 1], repeat=num_speakers):
        if sum(bits) <= max_set_size:
            yield bits


@pytest.mark.parametrize("k,m", [(3, 2), (4, 2), (4, 3), (2, 2)])
def test_round_trip_multilabel_powerset_multilabel(k, m):
    ps = Powerset(k, m)
    patterns = torch.tensor(list(_all_patterns(k, m)), dtype=torch.float32)[None]
    onehot = ps.to_powerset(patterns)
    assert onehot.shape == (1, patterns.shape[1], ps.num_classes)
    back = ps.to_multilabel(torch.log(onehot.clamp_min(1e-9)))
    assert torch.equal(back, patterns)


def test_soft_multilabel_is_marginal_probability():
    ps = Powerset()
    log_probs = torch.randn(2, 5, 7).log_softmax(-1)
    soft = ps.to_multilabel(log_probs, soft=True)
    probs = log_probs.exp()
    # speaker 0 is in classes {0}, {0,1}, {0,2}: indices 1, 4, 5
    assert torch.allclose(soft[..., 0], probs[..., [1, 4, 5]].sum(-1), atol=1e-6)


def test_too_many_speakers_map_to_a_two_speaker_class():
    ps = Powerset()
    ids = ps.class_ids(torch.tensor([[[1.0, 1.0, 1.0]]]))
    assert ps.sets[ids.item()] == (0, 1)


@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
def test_permutation_mapping_commutes_with_conversion(perm):
    ps = Powerset()
    mapping = ps.permutation_mapping(perm)
    scores = torch.randn(3, 11, 7).log_softmax(-1)
    assert torch.equal(ps.to_multilabel(scores)[..., list(perm)],
                       ps.to_multilabel(scores[..., mapping]))
    assert torch.allclose(ps.to_multilabel(scores, soft=True)[..., list(perm)],
                          ps.to_multilabel(scores[..., mapping], soft=True))


def test_identity_permutation_is_identity_mapping():
    assert torch.equal(Powerset().permutation_mapping((0, 1, 2)), torch.arange(7))


def test_bad_arguments():
    with pytest.raises(ValueError):
        Powerset(2, 3)
    with pytest.raises(ValueError, match="not a permutation"):
        Powerset().permutation_mapping((0, 0, 1))
