"""Functions the isolation tests run in forked children (importable by the fork server)."""

from __future__ import annotations

import os
import resource
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


def setsid_grandchild(request: dict[str, Any]) -> dict[str, Any]:
    """Leaves a grandchild in a session of its own, then returns (or hangs, with ``hang``)."""
    grandchild = os.fork()
    if grandchild == 0:
        os.setsid()
        time.sleep(600)
        os._exit(0)
    with open(request["pid_file"], "w") as handle:
        handle.write(str(grandchild))
    if request.get("hang"):
        time.sleep(600)
    return {"grandchild": grandchild}


def daemon(request: dict[str, Any]) -> dict[str, Any]:
    """The classic double fork: the daemon's parent exits at once, so it is nobody's child."""
    reader, writer = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(writer, str(os.getpid()).encode())
            time.sleep(600)
        os._exit(0)
    os.close(writer)
    return {"daemon": int(os.read(reader, 32))}


def allocate_forever(request: dict[str, Any]) -> dict[str, Any]:
    chunks = []
    while True:
        chunks.append(b"x" * (8 << 20))


def open_files(request: dict[str, Any]) -> dict[str, Any]:
    handles = []
    try:
        while True:
            handles.append(open(os.devnull))
    except OSError as exc:
        return {
            "opened": len(handles),
            "errno": exc.errno,
            "limit": resource.getrlimit(resource.RLIMIT_NOFILE),
        }


def spin(request: dict[str, Any]) -> dict[str, Any]:
    while True:
        pass


def fork_many(request: dict[str, Any]) -> dict[str, Any]:
    with open(request["pid_file"], "w") as handle:
        for _ in range(request["count"]):
            child = os.fork()
            if child == 0:
                time.sleep(600)
                os._exit(0)
            handle.write(f"{child} ")
    time.sleep(600)
    return {}


def main_module_ran(request: dict[str, Any]) -> dict[str, Any]:
    # multiprocessing runs the parent's main module in a child under this name.
    return {"ran": hasattr(sys.modules.get("__mp_main__"), "RAN_AS_MAIN")}
