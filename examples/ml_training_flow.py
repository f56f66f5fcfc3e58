"""ML training example: a ridge-regression day-ahead carbon-intensity model in numpy/pandas.

Features: the same hour 1, 2 and 7 days before, hour-of-day and day-of-week harmonics. Trains
on 2021-2022 of a zone's embedded (real) data with closed-form ridge over a grid of penalties,
picks the penalty on a validation split and reports MAE on 2023. CPU-bound and batch: a good
fit for time shifting (12 h deadline) and for moving to a greener region.

    .venv/bin/python examples/ml_training_flow.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from prefect import flow, task

from care_flows.orchestration import care
from care_flows.policy import CarePolicy, RegionTarget

__all__ = ["POLICY", "features", "fit_ridge", "train_model"]

POLICY = CarePolicy(
    home_region="eu-south-2",
    regions=["eu-south-2", "eu-north-1"],
    priorities=["carbon", "cost"],
    deadline_within="12h",
    expected_duration="45m",
    vcpu=4,
    memory_gib=8,
    cpu_utilisation=0.9,
    targets={"eu-south-2": RegionTarget(work_pool="care-eu-south-2"), "eu-north-1": RegionTarget(work_pool="care-eu-north-1")},
)


@task
def features(zone: str) -> pd.DataFrame:
    """Design matrix + target for ``zone`` (rows with full lags only)."""
    from care_flows.data import embedded_intensity

    y = embedded_intensity(zone, "lifecycle").astype(float)
    df = pd.DataFrame({"y": y})
    for days in (1, 2, 7):
        df[f"lag_{days}d"] = y.shift(24 * days)
    hour, dow = df.index.hour.to_numpy(), df.index.dayofweek.to_numpy()
    for k in (1, 2):
        df[f"h_sin{k}"], df[f"h_cos{k}"] = np.sin(2 * np.pi * k * hour / 24), np.cos(2 * np.pi * k * hour / 24)
    df["d_sin"], df["d_cos"] = np.sin(2 * np.pi * dow / 7), np.cos(2 * np.pi * dow / 7)
    return df.dropna()


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Closed-form ridge with an unpenalised intercept; returns [intercept, coefs...]."""
    xm, ym = x.mean(axis=0), y.mean()
    xc = x - xm
    coef = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - ym))
    return np.concatenate([[ym - xm @ coef], coef])


@task
def train(df: pd.DataFrame, alphas: list[float]) -> dict:
    """Select alpha on 2022, refit on 2021-2022, test on 2023 (MAE, g/kWh)."""
    cols = [c for c in df.columns if c != "y"]
    x, y, year = df[cols].to_numpy(), df["y"].to_numpy(), df.index.year.to_numpy()
    fit_m, val_m, train_m, test_m = year == 2021, year == 2022, year <= 2022, year == 2023

    def mae(w: np.ndarray, m: np.ndarray) -> float:
        return float(np.mean(np.abs(w[0] + x[m] @ w[1:] - y[m])))

    val = {a: mae(fit_ridge(x[fit_m], y[fit_m], a), val_m) for a in alphas}
    best = min(val, key=val.get)
    w = fit_ridge(x[train_m], y[train_m], best)
    naive = float(np.mean(np.abs(df["lag_1d"].to_numpy()[test_m] - y[test_m])))
    return {"alpha": best, "val_mae": val[best], "test_mae": mae(w, test_m), "naive_1d_mae": naive, "n_train": int(train_m.sum())}


@care(policy=POLICY)
@flow(name="care-ml-training", log_prints=True)
def train_model(zone: str = "ES", alphas: list[float] = [0.1, 1.0, 10.0, 100.0, 1000.0]) -> dict:  # noqa: B006
    """Train and evaluate the day-ahead model for ``zone``."""
    result = train(features(zone), alphas)
    print(f"{zone}: test MAE {result['test_mae']:.1f} g/kWh (1-day naive {result['naive_1d_mae']:.1f})")
    return result


if __name__ == "__main__":
    train_model()
