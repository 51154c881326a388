"""The INT8 accuracy budget and the comparison behind it."""

from __future__ import annotations

import numpy as np
import pytest

from hwopt.errors import UsageError
from hwopt.quant.accuracy import AccuracyBudget, classifier_like, compare


def test_budget_parsing() -> None:
    assert AccuracyBudget.parse("0.02") == AccuracyBudget(min_cosine=0.98, min_top1=0.98)
    assert AccuracyBudget.parse("cosine=0.995") == AccuracyBudget(min_cosine=0.995, min_top1=0.99)
    assert AccuracyBudget.parse("top1=0.9,abs=0.5") == AccuracyBudget(0.99, 0.9, 0.5)
    for bad in ("1.5", "cos=0.9", "cosine=high", "top1"):
        with pytest.raises(UsageError):
            AccuracyBudget.parse(bad)


def test_compare_cosine_abs_and_top1() -> None:
    ref = [{"logits": np.array([[1.0, 3.0, 2.0], [5.0, 1.0, 0.0]], np.float32)}]
    same_argmax = [{"logits": np.array([[1.1, 2.9, 2.0], [5.0, 1.2, 0.1]], np.float32)}]
    result = compare(ref, same_argmax)
    assert result.top1 == 1.0 and result.samples == 1
    assert result.max_abs == pytest.approx(0.2, abs=1e-6)
    assert 0.99 < result.cosine < 1.0

    flipped = [{"logits": np.array([[1.0, 2.0, 3.0], [5.0, 1.0, 0.0]], np.float32)}]
    result = compare(ref, flipped)
    assert result.top1 == 0.5
    assert "top-1 agreement 50.0% < 99.0%" in result.violations(AccuracyBudget())


def test_sequence_outputs_count_every_position() -> None:
    ref = np.zeros((1, 4, 5), np.float32)
    ref[0, :, 1] = 1.0
    got = ref.copy()
    got[0, 3, 4] = 2.0  # one of four positions changes class
    assert compare([{"y": ref}], [{"y": got}]).top1 == 0.75


def test_maps_are_not_classifiers() -> None:
    assert not classifier_like(np.zeros((1, 1, 64, 64), np.float32))
    assert not classifier_like(np.zeros((1, 1), np.float32))
    assert classifier_like(np.zeros((2, 10), np.float32))
    assert classifier_like(np.zeros((1, 40, 97), np.float32), "softmax_out")  # a CTC recognizer
    # An encoder's states: an arg-max over features is no class.
    assert not classifier_like(np.zeros((1, 128, 256), np.float32), "last_hidden_state")
    assert not classifier_like(np.zeros((1, 128, 256), np.float32), "hidden")
    assert compare([{"m": np.ones((1, 1, 4, 4))}], [{"m": np.ones((1, 1, 4, 4))}]).top1 is None
