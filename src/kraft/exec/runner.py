"""Wrapper around a job's command: runs it, then writes its exit status to a file atomically.

    python -m kraft.exec.runner --job-id 7 --attempt 1 --exit-file F -- cmd args...

The exit file lets a restarted control plane learn how a job it did not launch ended, and the
job id in this process's arguments lets it find the job again instead of starting it twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def main(argv: list[str]) -> int:
    split = argv.index("--")
    opts = dict(zip(argv[:split:2], argv[1:split:2]))
    cmd = argv[split + 1:]
    exit_file = opts["--exit-file"]
    child = subprocess.Popen(cmd)

    def forward(signum, _frame):
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = child.wait()
    tmp = exit_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(code))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, exit_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
