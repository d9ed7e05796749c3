"""`npm ci` for a folder of pinned npm packages (tests/clients, tests/a11y), once.

Both passes of `make test` and every xdist worker may ask at the same moment on a fresh clone;
an exclusive lock on a file beside package.json makes the first install and the others wait,
so nobody reads a half-written node_modules.
"""

import fcntl
import shutil
import subprocess
from pathlib import Path

import pytest


def npm_ci(folder: Path, installed: Path) -> None:
    """Install folder's locked packages unless `installed` (a file npm writes) exists."""
    with open(folder / ".npm-ci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed.exists():
            return
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed for these tests (Debian: apt-get install -y npm).")
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=folder,
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.fail(f"npm ci failed in {folder}:\n{done.stdout}\n{done.stderr}")
