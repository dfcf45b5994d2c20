"""The digital twin's body: virtual clock, event heap, trace replay, metrics."""
