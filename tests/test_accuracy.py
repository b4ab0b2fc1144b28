"""The accuracy contract "auto" keeps: every method it may choose stays within
conv.bench.accuracy.CONTRACT (normwise, against the exact extended-precision reference)
on the whole grid, C_in up to 1024 and inputs of mixed magnitude."""
import numpy as np
import pytest

import conv
from conv import _auto
from conv.bench import accuracy


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("method", [m for m in _auto.CANDIDATES if m in conv.list_methods()])
def test_auto_candidates_keep_the_contract(method, dtype):
    worst = accuracy.measure([method], [dtype])
    err, problem = worst[method, dtype]
    assert err <= accuracy.CONTRACT[dtype], (method, dtype, err, problem)


def test_the_grid_reaches_c_in_1024_and_mixed_magnitudes():
    problems = list(accuracy.grid())
    assert max(c for c, _, _ in problems) == 1024 and {m for *_, m in problems} == {
        "normal", "mixed"}
    x, w = accuracy.inputs((16, 3, "mixed"), "float64")
    assert np.abs(x).max() / np.abs(x).min() > 1e6  # really mixed


def test_normwise_error():
    exact = np.array([[1.0, -4.0], [2.0, 0.0]])
    assert accuracy.normwise_error(exact, exact) == 0.0
    assert accuracy.normwise_error(exact + [[0, 0], [0, 0.04]], exact) == pytest.approx(0.01)
