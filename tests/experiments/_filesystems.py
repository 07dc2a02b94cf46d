"""Real filesystems for the run-folder tests: a tmpfs mount (root only), else the test says it could not."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "64m", read_only: bool = False):
    """Mount a tmpfs of ``size`` at ``path`` for the block (root only); yields whether it is mounted."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)]
    mounted = os.geteuid() == 0 and subprocess.run(command, capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
