"""Inference services: the latency model (more to come: simulation, routing, autoscaling)."""
