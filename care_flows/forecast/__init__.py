"""Forecasts: carbon intensity where the source has none (``carbon``), and a flow's resource
usage (``usage``: persistent forecast + anomaly detection + fallback model)."""

__all__: list[str] = []
