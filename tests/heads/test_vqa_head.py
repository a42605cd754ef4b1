import math

import pytest
import torch
import torch.nn.functional as F

from mmgraph.errors import InputError
from mmgraph.heads import VQAHead, predict_answers, vqa_bce_loss, vqa_ce_loss


def test_head_shapes_repr_and_backward():
    head = VQAHead(8, 5, mult=2, dropout=0.0)
    assert repr(head) == "VQAHead(8, 5, mult=2)"
    assert head.lin1.out_features == 16
    x = torch.randn(3, 8, requires_grad=True)
    out = head(x)
    assert out.shape == (3, 5)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_head_rejects_no_answers():
    with pytest.raises(InputError, match="num_answers"):
        VQAHead(8, 0)


def test_bce_is_scaled_by_the_number_of_answers():
    # One question, two answers, logits 0: each entry costs log 2; the mean times A = 2 log 2.
    loss = vqa_bce_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))
    assert loss.item() == pytest.approx(2 * math.log(2))


def test_bce_equals_sum_over_answers_mean_over_questions():
    logits = torch.randn(4, 7)
    scores = torch.rand(4, 7)
    p = torch.sigmoid(logits)
    expected = -(scores * p.log() + (1 - scores) * (1 - p).log()).sum(1).mean()
    torch.testing.assert_close(vqa_bce_loss(logits, scores), expected)


def test_bce_shape_errors():
    with pytest.raises(InputError, match="num_answers"):
        vqa_bce_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(InputError, match="soft scores"):
        vqa_bce_loss(torch.zeros(2, 3), torch.zeros(2))


def test_ce_ignores_unknown_answers():
    logits = torch.randn(4, 5)
    ids = torch.tensor([1, -1, 4, 0])
    keep = torch.tensor([0, 2, 3])
    expected = F.cross_entropy(logits[keep], ids[keep])
    torch.testing.assert_close(vqa_ce_loss(logits, ids), expected)
    # [B, 1] targets (a graph-level y of shape [1] batched as [B, 1]) are accepted too.
    torch.testing.assert_close(vqa_ce_loss(logits, ids.view(-1, 1)), expected)


def test_ce_all_unknown_is_zero_with_a_gradient_path():
    logits = torch.randn(2, 3, requires_grad=True)
    loss = vqa_ce_loss(logits, torch.tensor([-1, -1]))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None


def test_ce_out_of_range_ids():
    with pytest.raises(InputError, match="num_answers"):
        vqa_ce_loss(torch.zeros(2, 3), torch.tensor([0, 3]))


def test_predict_answers_returns_strings_best_first():
    answers = ["no", "yes", "red", "2"]
    logits = torch.tensor([[0.0, 3.0, 1.0, -1.0], [2.0, 0.0, 0.0, 5.0]])
    out = predict_answers(logits, answers, k=2)
    assert [[a for a, _ in row] for row in out] == [["yes", "red"], ["2", "no"]]
    probs = logits.softmax(-1)
    assert out[0][0][1] == pytest.approx(probs[0, 1].item())
    assert all(row[0][1] >= row[1][1] for row in out)
    sig = predict_answers(logits, answers, k=1, activation="sigmoid")
    assert sig[1][0] == ("2", pytest.approx(torch.sigmoid(torch.tensor(5.0)).item()))


def test_predict_answers_errors():
    with pytest.raises(InputError, match="answer strings"):
        predict_answers(torch.zeros(1, 3), ["a", "b"])
    with pytest.raises(InputError, match="k must"):
        predict_answers(torch.zeros(1, 2), ["a", "b"], k=3)
    with pytest.raises(InputError, match="activation"):
        predict_answers(torch.zeros(1, 2), ["a", "b"], activation="tanh")
