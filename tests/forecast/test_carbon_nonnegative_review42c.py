"""Review 42c H1: the ridge forecast dipped below 0 on data near 0 (Sweden's direct intensity), and
planning, which refuses a negative forecast value, then failed on CaRE's own forecast."""

import numpy as np
import pandas as pd

from care_flows.cli import main
from care_flows.data import embedded_intensity
from care_flows.forecast.carbon import forecast_matrix


def test_a_forecast_of_a_never_negative_history_is_never_negative():
    se = embedded_intensity("SE", "direct")
    values = se.to_numpy(dtype=float)
    issue = np.arange(int((se.index < pd.Timestamp("2023-01-01", tz="UTC")).sum()), len(values) - 24, 1)
    fc = forecast_matrix(values, issue, 24)
    assert values.min() >= 0 and fc.min() >= 0
    assert (fc == 0).any()  # the case exists: without the floor these would be negative
    # a history with negative values (not an intensity) keeps the model's sign
    assert forecast_matrix(-values, issue[:50], 24).max() <= 0


def test_care_plan_on_swedens_direct_intensity_plans(capsys):
    code = main(["plan", "--zone", "SE", "--kind", "direct", "--now", "2023-01-03T10:00:00Z", "--duration", "2h", "--within", "24h", "--json"])
    assert code == 0, capsys.readouterr().err
