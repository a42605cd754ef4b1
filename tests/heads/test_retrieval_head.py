import math

import pytest
import torch
import torch.nn.functional as F

from mmgraph.errors import InputError
from mmgraph.heads import (
    ITMHead,
    LearnableTemperature,
    hard_negative_ranking_loss,
    info_nce_loss,
    itm_loss,
    vse_hinge_loss,
)

# Scores chosen so that max-violation and sum differ (row 0 and column 2 violate twice).
SCORES = torch.tensor([[0.9, 0.8, 0.75], [0.2, 0.7, 0.6], [0.85, 0.3, 0.5]])


def _pair(scores):
    """Embeddings whose image x text products are ``scores``: img = I, txt = scores^T."""
    return torch.eye(scores.size(0)), scores.t().contiguous()


def test_temperature_init_cap_and_repr():
    temp = LearnableTemperature(0.07, max_scale=100.0)
    assert temp().item() == pytest.approx(1 / 0.07, rel=1e-5)
    assert repr(temp) == "LearnableTemperature(init=0.07, max_scale=100.0)"
    with torch.no_grad():
        temp.log_scale.fill_(10.0)
    assert temp().item() == pytest.approx(100.0)
    with pytest.raises(InputError):
        LearnableTemperature(0.0)


def test_info_nce_by_hand():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # logits = [[1, 0.6], [0, 0.8]]
    rows = -math.log(math.e / (math.e + math.exp(0.6))) - math.log(math.exp(0.8) / (1 + math.exp(0.8)))
    cols = -math.log(math.e / (math.e + 1)) - math.log(math.exp(0.8) / (math.exp(0.6) + math.exp(0.8)))
    expected = 0.5 * (rows / 2 + cols / 2)
    assert info_nce_loss(img, txt, 1.0).item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_is_cross_entropy_both_ways():
    img = F.normalize(torch.randn(5, 8), dim=-1)
    txt = F.normalize(torch.randn(5, 8), dim=-1)
    logits = 7.0 * img @ txt.t()
    target = torch.arange(5)
    expected = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
    torch.testing.assert_close(info_nce_loss(img, txt, torch.tensor(7.0)), expected)
    # Symmetric: swapping the roles of images and texts gives the same loss.
    torch.testing.assert_close(info_nce_loss(txt, img, 7.0), expected)


def test_info_nce_masks_duplicate_images():
    img, txt = _pair(SCORES)
    ids = torch.tensor([4, 4, 9])  # pairs 0 and 1 show one image
    s = SCORES

    def nll(values, pos):
        return -(values[pos] - torch.logsumexp(values, 0))

    rows = nll(s[0, [0, 2]], 0) + nll(s[1, [1, 2]], 0) + nll(s[2], 2)
    cols = nll(s[[0, 2], 0], 0) + nll(s[[1, 2], 1], 0) + nll(s[:, 2], 2)
    expected = 0.5 * (rows / 3 + cols / 3)
    torch.testing.assert_close(info_nce_loss(img, txt, 1.0, image_ids=ids), expected)
    assert not torch.isclose(info_nce_loss(img, txt, 1.0), expected)
    # Distinct ids give the unmasked loss.
    torch.testing.assert_close(
        info_nce_loss(img, txt, 1.0, image_ids=torch.arange(3)), info_nce_loss(img, txt, 1.0)
    )


def test_vse_max_violation_and_sum_by_hand():
    img, txt = _pair(SCORES)
    assert vse_hinge_loss(img, txt, 0.2, max_violation=True).item() == pytest.approx(1.65, abs=1e-6)
    assert vse_hinge_loss(img, txt, 0.2, max_violation=False).item() == pytest.approx(2.0, abs=1e-6)
    assert vse_hinge_loss(img, txt, 0.2, reduction="mean").item() == pytest.approx(0.55, abs=1e-6)


def test_vse_masks_duplicate_images():
    img, txt = _pair(SCORES)
    loss = vse_hinge_loss(img, txt, 0.2, max_violation=True, image_ids=torch.tensor([0, 0, 1]))
    assert loss.item() == pytest.approx(1.3, abs=1e-6)


def test_vse_gradient_reaches_only_hardest_negatives():
    def score_grad(max_violation):
        scores = SCORES.clone().requires_grad_(True)
        img = torch.eye(3)
        vse_hinge_loss(img, scores.t(), 0.2, max_violation=max_violation).backward()
        return scores.grad

    hardest, every = score_grad(True), score_grad(False)
    # scores[0, 2] violates in row 0 (not the hardest there: scores[0, 1] is) and in column 2 (the hardest).
    assert hardest[0, 2].item() == 1.0 and every[0, 2].item() == 2.0
    assert hardest[0, 1].item() == 2.0  # the hardest of row 0 and of column 1
    # scores[1, 0] violates nowhere.
    assert hardest[1, 0].item() == 0.0 and every[1, 0].item() == 0.0


def test_contrastive_shape_errors():
    with pytest.raises(InputError, match="N matched pairs"):
        info_nce_loss(torch.zeros(3, 4), torch.zeros(2, 4), 1.0)
    with pytest.raises(InputError, match="image_ids"):
        vse_hinge_loss(torch.zeros(3, 4), torch.zeros(3, 4), image_ids=torch.zeros(2))
    with pytest.raises(InputError, match="reduction"):
        vse_hinge_loss(torch.zeros(3, 4), torch.zeros(3, 4), reduction="max")


def test_itm_head_and_loss():
    head = ITMHead(6)
    assert repr(head) == "ITMHead(6)"
    assert head(torch.randn(4, 6)).shape == (4,)
    loss = itm_loss(torch.tensor([0.0, 2.0]), torch.tensor([1, 0]))
    assert loss.item() == pytest.approx((math.log(2) + math.log(1 + math.exp(2))) / 2, rel=1e-6)
    with pytest.raises(InputError):
        itm_loss(torch.zeros(2), torch.zeros(3))


def test_balanced_itm_loss_weighs_each_class_half():
    logits = torch.tensor([0.5, 2.0, -1.0, 1.0])
    labels = torch.tensor([1, 0, 0, 0])
    each = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none")
    expected = 0.5 * each[0] + 0.5 * each[1:].mean()
    torch.testing.assert_close(itm_loss(logits, labels, balance=True), expected)
    # Unbalanced it is the plain mean, which the three negatives dominate.
    torch.testing.assert_close(itm_loss(logits, labels), each.mean())
    # One class only: its mean, as without balancing.
    torch.testing.assert_close(itm_loss(logits[1:], labels[1:], balance=True), each[1:].mean())
    weight = torch.tensor([2.0, 1.0, 0.0, 1.0])
    weighted = 0.5 * 2.0 * each[0] + 0.5 * (each[1] + each[3]) / 3
    torch.testing.assert_close(itm_loss(logits, labels, weight=weight, balance=True), weighted)


def test_hard_negative_ranking_loss_is_cross_entropy_within_each_group():
    positive = torch.tensor([1.0, -0.5, 0.3], requires_grad=True)
    negative = torch.tensor([0.2, 2.0, 0.7, -1.0], requires_grad=True)
    owner = torch.tensor([0, 0, 2, 0])
    loss = hard_negative_ranking_loss(positive, negative, owner)
    # Caption 1 owns no negative and is left out.
    groups = [
        torch.stack([positive[0], negative[0], negative[1], negative[3]]),
        torch.stack([positive[2], negative[2]]),
    ]
    expected = torch.stack([F.cross_entropy(g.view(1, -1), torch.tensor([0])) for g in groups]).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert positive.grad[1] == 0 and positive.grad[0] < 0 and bool((negative.grad > 0).all())
    # Large logits stay finite (the log-sum-exp is shifted by each group's maximum).
    big = hard_negative_ranking_loss(torch.tensor([1000.0]), torch.tensor([1001.0]), torch.tensor([0]))
    assert big.item() == pytest.approx(math.log(1 + math.e), rel=1e-6)
    empty = hard_negative_ranking_loss(positive, torch.zeros(0), torch.zeros(0, dtype=torch.long))
    assert empty.item() == 0.0
    with pytest.raises(InputError, match="owner"):
        hard_negative_ranking_loss(positive, negative, torch.tensor([0, 3, 1, 1]))
    with pytest.raises(InputError):
        hard_negative_ranking_loss(positive, negative, owner[:2])
