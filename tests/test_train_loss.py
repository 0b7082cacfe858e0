"""Permutation-invariant loss and local DER (train/loss.py, core/permutation.py,
core/local_der.py)."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from core.local_der import der_from_sums, der_sums
from core.permutation import best_permutation, permute_speakers
from core.powerset import Powerset
from train.loss import multilabel_loss, powerset_loss, segmentation_loss


def random_activity(batch=5, frames=40, speakers=3, max_active=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, frames, speakers, generator=g) < 0.4).float()
    too_many = x.sum(-1) > max_active
    x[..., -1][too_many] = 0.0
    return x


def test_best_permutation_matches_exhaustive_search():
    ref = random_activity(seed=1)
    hyp = torch.rand(5, 40, 3, generator=torch.Generator().manual_seed(2))
    perm = best_permutation(ref, hyp)
    for b in range(5):
        costs = {p: ((hyp[b] - ref[b][:, list(p)]) ** 2).sum().item()
                 for p in itertools.permutations(range(3))}
        chosen = ((hyp[b] - ref[b][:, perm[b]]) ** 2).sum().item()
        assert chosen == pytest.approx(min(costs.values()), abs=1e-5)


def test_hungarian_path_for_many_speakers_recovers_a_shuffle():
    ref = random_activity(batch=3, frames=60, speakers=6, max_active=6, seed=3)
    shuffle = torch.tensor([[3, 0, 5, 1, 4, 2]] * 3)
    hyp = permute_speakers(ref, shuffle)
    aligned = permute_speakers(ref, best_permutation(ref, hyp))
    assert torch.equal(aligned, hyp)


def test_powerset_loss_is_permutation_invariant_and_equals_plain_nll():
    ps = Powerset(3, 2)
    target = random_activity(seed=4)
    # a noisy prediction of a speaker-shuffled target: the best permutation is unique
    noise = torch.randn(5, 40, 7, generator=torch.Generator().manual_seed(5))
    log_probs = F.log_softmax(3.0 * ps.to_powerset(target[..., [1, 2, 0]]) + noise, dim=-1)
    loss, permuted = powerset_loss(log_probs, target, ps)
    shuffled = target[..., [2, 0, 1]]
    loss_shuffled, _ = powerset_loss(log_probs, shuffled, ps)
    assert loss.item() == pytest.approx(loss_shuffled.item(), abs=1e-6)
    expected = F.nll_loss(log_probs.reshape(-1, 7), ps.class_ids(permuted).reshape(-1))
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    # a prediction equal to a shuffled target's classes has (near) zero loss
    perfect = torch.log(ps.to_powerset(shuffled).clamp(min=1e-9))
    assert powerset_loss(perfect, target, ps)[0].item() < 1e-6


def test_powerset_loss_ignores_frames_with_too_many_speakers_and_pads_speakers():
    ps = Powerset(3, 2)
    target = torch.ones(1, 4, 3)
    target[0, 2:] = torch.tensor([1.0, 0.0, 0.0])
    log_probs = F.log_softmax(torch.randn(1, 4, 7), dim=-1)
    loss, _ = powerset_loss(log_probs, target, ps)
    assert torch.isfinite(loss)
    two_speakers = random_activity(batch=2, frames=10, speakers=2, seed=6)
    scores = F.log_softmax(torch.randn(2, 10, 7), dim=-1)
    assert torch.isfinite(segmentation_loss(scores, two_speakers, ps))
    with pytest.raises(ValueError, match="speakers per chunk"):
        segmentation_loss(scores[..., :7], random_activity(2, 10, 4, 2), ps)


def test_loss_is_float32_under_bf16_scores_and_gradients_flow():
    ps = Powerset(3, 2)
    logits = torch.randn(2, 10, 7, requires_grad=True)
    scores = F.log_softmax(logits, -1).to(torch.bfloat16)
    loss = segmentation_loss(scores, random_activity(2, 10), ps)
    assert loss.dtype == torch.float32
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_multilabel_loss_uses_the_same_permutation():
    target = random_activity(seed=7)
    probs = target[..., [1, 2, 0]] * 0.98 + 0.01
    loss, permuted = multilabel_loss(probs, target)
    assert torch.equal(permuted, target[..., [1, 2, 0]])
    assert loss.item() == pytest.approx(-torch.log(torch.tensor(0.99)).item(), rel=1e-4)
    assert segmentation_loss(probs, target, None).item() == pytest.approx(loss.item())


def test_der_counts_by_hand():
    ps = Powerset(3, 2)
    # reference: frame0 spk0, frame1 spk0+spk1, frame2 silence, frame3 spk1
    ref = torch.tensor([[[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]]], dtype=torch.float32)
    # hypothesis (speaker labels swapped 0<->2): frame0 {2}, frame1 {2}, frame2 {0}, frame3 {1}
    hyp_classes = torch.tensor([[3, 3, 1, 2]])
    scores = torch.log(F.one_hot(hyp_classes, 7).float().clamp(min=1e-9))
    sums = der_sums(scores, ref, ps)
    assert sums == {"false_alarm": 1.0, "missed": 1.0, "confusion": 0.0, "speech": 4.0}
    rates = der_from_sums(sums)
    assert rates["der"] == pytest.approx(0.5)
    # confusion: hypothesis says speaker 1 where reference has speaker 0 only, speaker 0 taken
    hyp_classes = torch.tensor([[1, 4, 0, 1]])
    scores = torch.log(F.one_hot(hyp_classes, 7).float().clamp(min=1e-9))
    sums = der_sums(scores, ref, ps)
    assert sums["confusion"] == 1.0 and sums["missed"] == 0.0 and sums["false_alarm"] == 0.0
    assert der_from_sums({"speech": 0.0})["der"] == 0.0


def test_der_multilabel_threshold():
    ref = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    probs = torch.tensor([[[0.6, 0.4], [0.2, 0.7]]])
    assert der_from_sums(der_sums(probs, ref, None))["der"] == 0.0
    assert der_from_sums(der_sums(probs, ref, None, threshold=0.65))["der"] == 0.5
