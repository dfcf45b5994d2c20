"""Hourly time series per grid zone or site: carbon intensity, price, outdoor temperature."""

from kraft.signals.series import HourlySeries, SignalError, load_series

__all__ = ["HourlySeries", "SignalError", "load_series"]
