"""A child process that stops with its parent: Ctrl-C or SIGTERM to ``elt`` stop it too."""

from __future__ import annotations

import signal
import subprocess
from types import FrameType


def run_until_stopped(command: list[str], *, env: dict[str, str], cwd: str) -> int:
    """Run ``command`` until it ends or this process is asked to stop; its exit code.

    SIGINT reaches a terminal's whole process group, but SIGTERM (a service manager, ``kill``)
    only reaches this process: either way the child is terminated (killed after 10 s), so
    that a server child does not keep its port.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    child = subprocess.Popen(command, env=env, cwd=cwd)
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
