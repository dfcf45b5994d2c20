"""Hourly time series per grid zone or site: carbon intensity, price, outdoor temperature."""

from kraft.signals.series import HourlyIntegral, HourlySeries, SignalError, load_series

__all__ = ["HourlyIntegral", "HourlySeries", "SignalError", "load_series"]
