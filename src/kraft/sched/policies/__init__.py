"""Bundled policies, one file each. Importing this package registers them."""

from kraft.sched.policies import backfill, fairshare, fifo, las, sjf, srtf  # noqa: F401
