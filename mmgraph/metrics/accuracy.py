r"""Classification accuracy, overall and per question family.

For answer classification (Sort-of-CLEVR, the synthetic benchmark, VQA with
a fixed answer vocabulary as top-1 accuracy), each question has one target
class and one family (``"nonrel"`` / ``"rel"`` / ``"ternary"`` for
Sort-of-CLEVR, ``"counting"``, ``"relational"``, ... for the synthetic
benchmark):

.. math::
    \mathrm{acc}(f) = \frac{\#\{i : f_i = f,\ \hat{y}_i = y_i\}}{\#\{i : f_i = f\}}

Accuracies are fractions in [0, 1]; every question weighs the same, so
``"overall"`` is the question-weighted mean of the families, not the mean
of the family accuracies. A target of ``-1`` marks a question whose answer
is outside the answer vocabulary: it counts as wrong whatever the
prediction, so that the accuracy over a split is not inflated by dropping
the questions the model cannot answer. To report coarser groups, map the
families to their group before passing them in.
"""

from __future__ import annotations

from typing import Dict, Hashable, Optional, Sequence, Union

import numpy as np
from torch import Tensor

from mmgraph.errors import InputError

ArrayLike = Union[Tensor, np.ndarray, Sequence[int]]

OVERALL = "overall"
UNKNOWN_TARGET = -1


def _as_numpy(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name} must be a tensor, numpy array or list, got {type(x).__name__}") from err


class AccuracyMeter:
    r"""Accumulates top-1 accuracy over batches, overall and per family.

    Example::

        meter = AccuracyMeter()
        for batch in loader:
            meter.update(model(batch).argmax(-1), batch.y, batch.family)
        meter.compute()  # {"nonrel": 0.98, "rel": 0.91, "overall": 0.945}

    Either every :meth:`update` passes families or none does, so that the
    families always add up to ``"overall"``.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forgets every batch seen so far."""
        self.correct: Dict[Hashable, int] = {}
        self.total: Dict[Hashable, int] = {}
        self.num_correct = 0
        self.num_samples = 0
        self._with_families: Optional[bool] = None

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(samples={self.num_samples}, families={len(self.total)})"

    def update(
        self,
        predictions: ArrayLike,
        targets: ArrayLike,
        families: Optional[Union[ArrayLike, Sequence[Hashable]]] = None,
    ) -> AccuracyMeter:
        """Adds a batch.

        Args:
            predictions (Tensor, np.ndarray or list): predicted class ids [B],
                or class scores [B, C] (their argmax is the prediction).
            targets (Tensor, np.ndarray or list): target class ids [B];
                ``-1`` = unknown answer, always wrong.
            families (Sequence, optional): the family of each sample [B]
                (strings or ints). (default: ``None``)

        Returns:
            AccuracyMeter: ``self``, for chaining.

        Raises:
            InputError: lengths disagree, a target is below ``-1``, or
                families are passed in some updates and not in others.
        """
        pred = _as_numpy(predictions, "predictions")
        target = _as_numpy(targets, "targets")
        if pred.ndim == 2:
            pred = pred.argmax(axis=-1)
        if pred.ndim != 1 or target.ndim != 1 or pred.shape != target.shape:
            raise InputError(
                f"predictions [B] (or scores [B, C]) and targets [B] must agree, got shapes "
                f"{tuple(_as_numpy(predictions, 'predictions').shape)} and {tuple(target.shape)}"
            )
        if target.size and not np.issubdtype(target.dtype, np.integer):
            raise InputError(f"targets must be integer class ids, got dtype {target.dtype}")
        if target.size and target.min() < UNKNOWN_TARGET:
            i = int(np.argmax(target < UNKNOWN_TARGET))
            raise InputError(
                f"targets[{i}] = {int(target[i])}; class ids are >= 0, or -1 for an unknown answer"
            )
        with_families = families is not None
        if self._with_families is not None and with_families != self._with_families:
            raise InputError(
                "families were passed in some updates and not in others; pass them in every update or in none"
            )
        correct = (pred == target) & (target != UNKNOWN_TARGET)  # [B]
        if with_families:
            fam = _as_numpy(families, "families")
            if fam.shape != target.shape:
                raise InputError(
                    f"families must have one entry per sample, shape {target.shape}, got {fam.shape}"
                )
            names, idx = np.unique(fam, return_inverse=True)
            names = names.tolist()
            if OVERALL in names:
                raise InputError(
                    f"a family is named {OVERALL!r}, which the result keeps for the overall accuracy"
                )
            idx = idx.reshape(-1)  # [B]
            won = np.bincount(idx, weights=correct, minlength=len(names))
            seen = np.bincount(idx, minlength=len(names))
            for k, name in enumerate(names):
                self.correct[name] = self.correct.get(name, 0) + int(won[k])
                self.total[name] = self.total.get(name, 0) + int(seen[k])
        self._with_families = with_families
        self.num_correct += int(correct.sum())
        self.num_samples += int(correct.size)
        return self

    def compute(self) -> Dict[Hashable, float]:
        """The accuracy of each family seen (sorted by name) and ``"overall"``,
        fractions in [0, 1].

        Raises:
            InputError: no sample was added.
        """
        if self.num_samples == 0:
            raise InputError("AccuracyMeter.compute() called before any sample was added")
        out: Dict[Hashable, float] = {
            name: self.correct[name] / self.total[name] for name in sorted(self.total, key=str)
        }
        out[OVERALL] = self.num_correct / self.num_samples
        return out


def per_family_accuracy(
    predictions: ArrayLike,
    targets: ArrayLike,
    families: Union[ArrayLike, Sequence[Hashable]],
) -> Dict[Hashable, float]:
    """Top-1 accuracy per family and ``"overall"`` in one call (see
    :class:`AccuracyMeter`; target ``-1`` counts as wrong).

    Args:
        predictions (Tensor, np.ndarray or list): class ids [N] or scores [N, C].
        targets (Tensor, np.ndarray or list): class ids [N], ``-1`` unknown.
        families (Sequence): the family of each sample [N].

    Returns:
        Dict[Hashable, float]: family -> accuracy, plus ``"overall"``.
    """
    return AccuracyMeter().update(predictions, targets, families).compute()
