"""Executors: run what the scheduler decided. Local processes by default; Ray and Slurm next."""
