"""GPU models and their data-sheet figures."""

from kraft.catalog.gpus import CATALOG, GpuModel, gpu_model

__all__ = ["CATALOG", "GpuModel", "gpu_model"]
