"""The books: IT and facility energy, carbon (location- and market-based, kept apart), cost,
compute in FLOP; and the models they use (GPU power, PUE)."""

from kraft.energy.books import EnergyInputs, keep_books
from kraft.energy.models import gpu_power_w, pue

__all__ = ["EnergyInputs", "gpu_power_w", "keep_books", "pue"]
