import numpy as np
import pytest
import torch

from mmgraph.errors import InputError
from mmgraph.metrics.accuracy import AccuracyMeter, per_family_accuracy

PRED = [0, 1, 2, 3, 1]
TARGET = [0, 1, 0, -1, -1]
FAMILY = ["rel", "rel", "nonrel", "nonrel", "ternary"]


def test_per_family_accuracy_hand_computed():
    out = per_family_accuracy(PRED, TARGET, FAMILY)
    # rel: 2 of 2; nonrel: 2 != 0 and an unknown target; ternary: unknown.
    assert out == {"nonrel": 0.0, "rel": 1.0, "ternary": 0.0, "overall": 0.4}
    # Question-weighted, not the mean of the family accuracies.
    assert out["overall"] != pytest.approx(np.mean([1.0, 0.0, 0.0]))
    assert list(out) == ["nonrel", "rel", "ternary", "overall"]


def test_unknown_target_is_wrong_even_when_predicted_minus_one():
    assert per_family_accuracy([-1, 2], [-1, 2], ["a", "a"]) == {"a": 0.5, "overall": 0.5}


def test_scores_are_reduced_by_argmax_and_tensors_work():
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    out = per_family_accuracy(logits, torch.tensor([1, 1, 1]), torch.tensor([0, 0, 1]))
    assert out == {0: 0.5, 1: 1.0, "overall": pytest.approx(2 / 3)}


def test_meter_over_batches_equals_one_call():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 4, size=200)
    target = rng.integers(-1, 4, size=200)
    family = rng.choice(["count", "exist", "query", "relate"], size=200)
    meter = AccuracyMeter()
    for start in range(0, 200, 37):
        meter.update(
            torch.from_numpy(pred[start : start + 37]), target[start : start + 37], family[start : start + 37]
        )
    assert len(meter) == 200
    whole = per_family_accuracy(pred, target, list(family))
    assert meter.compute() == pytest.approx(whole)
    for f in ("count", "exist", "query", "relate"):
        sel = family == f
        assert whole[f] == pytest.approx(np.mean((pred[sel] == target[sel]) & (target[sel] >= 0)))
    assert repr(meter) == "AccuracyMeter(samples=200, families=4)"
    meter.reset()
    assert len(meter) == 0


def test_meter_without_families_reports_overall_only():
    meter = AccuracyMeter().update([1, 2, 3], [1, 0, 3]).update([], [])
    assert meter.compute() == {"overall": pytest.approx(2 / 3)}


def test_errors():
    with pytest.raises(InputError, match="before any sample"):
        AccuracyMeter().compute()
    with pytest.raises(InputError, match="must agree"):
        per_family_accuracy([0, 1], [0], ["a", "b"])
    with pytest.raises(InputError, match="targets\\[1\\] = -2"):
        per_family_accuracy([0, 1], [0, -2], ["a", "b"])
    with pytest.raises(InputError, match="integer"):
        per_family_accuracy([0, 1], [0.0, 1.0], ["a", "b"])
    with pytest.raises(InputError, match="one entry per sample"):
        per_family_accuracy([0, 1], [0, 1], ["a"])
    with pytest.raises(InputError, match="'overall'"):
        per_family_accuracy([0, 1], [0, 1], ["a", "overall"])
    meter = AccuracyMeter().update([0], [0], ["a"])
    with pytest.raises(InputError, match="in every update or in none"):
        meter.update([0], [0])
    # A rejected batch leaves the meter unchanged.
    with pytest.raises(InputError):
        meter.update([0, 1], [0, 1], ["b", "overall"])
    assert meter.compute() == {"a": 1.0, "overall": 1.0}
