"""Review 38c L3: a series too short for any horizon asks for more data, not for a horizon below 1."""

from __future__ import annotations

import numpy as np
import pytest

from care_flows.errors import DataError
from care_flows.forecast.usage import evaluate_usage


@pytest.mark.parametrize("n", [1, 2])
def test_too_few_rows_for_any_horizon_asks_for_more_data(n):
    with pytest.raises(DataError) as info:
        evaluate_usage(np.arange(n, dtype=float), horizon=12, period=None)
    assert str(info.value) == f"series has {n} row(s), too few to evaluate any forecast (it needs at least horizon + 2 = 14 rows); give more data"


def test_enough_rows_for_a_shorter_horizon_names_the_longest_that_fits():
    with pytest.raises(DataError, match=r"series has 5 rows, not enough for a horizon of 12 steps; give horizon=N below 4, or more data"):
        evaluate_usage(np.arange(5, dtype=float), horizon=12, period=None)
    assert evaluate_usage(np.arange(5, dtype=float), horizon=3, period=None).origins is not None  # and that one works
