"""Functions the isolation tests run in forked children (importable by the fork server)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any


def environment(request: dict[str, Any]) -> dict[str, Any]:
    return {"names": sorted(os.environ), "pid": os.getpid(), "sid": os.getsid(0)}


def hang_with_grandchild(request: dict[str, Any]) -> dict[str, Any]:
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(request["pid_file"], "w") as handle:
        handle.write(f"{os.getpid()} {grandchild.pid}")
    time.sleep(600)
    return {}


def crash(request: dict[str, Any]) -> dict[str, Any]:
    os._exit(3)
