"""Processes the benchmark starts, and the guarantee that it stops every one of them.

Every server runs in its own session (process group), so stopping it also stops
anything it forked, and nothing else.  Each child also asks the kernel for
SIGTERM when the benchmark dies (PR_SET_PDEATHSIG), so even a SIGKILLed
``make bench`` leaves no proxy behind.  SIGINT, SIGTERM and SIGHUP turn into an
exception in the main thread, whose ``finally`` calls :meth:`Registry.stop_all`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1
try:
    _LIBC: Any = ctypes.CDLL("libc.so.6", use_errno=True)
    _PRCTL = _LIBC.prctl
except OSError:  # not glibc Linux: the process-group cleanup still applies
    _PRCTL = None


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM when the benchmark dies."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Interrupted(Exception):
    """SIGTERM or SIGHUP arrived; unwinding runs the cleanup."""


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C (SIGINT already raises KeyboardInterrupt)."""
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGHUP, _raise_interrupted)


class Registry:
    """Starts processes and remembers them until they are stopped."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, cmd: list[str], *, log: Path, env: dict[str, str],
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``cmd`` in its own session; stdout and stderr go to ``log``."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                    start_new_session=True, preexec_fn=_die_with_parent)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout``."""
        if proc is None:
            return
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        # A child that outlived its leader still carries the group id.
        _signal_group(proc.pid, signal.SIGKILL)
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        """Stop everything still registered, newest first; never raises."""
        for proc in reversed(list(self._procs)):
            with contextlib.suppress(Exception):  # cleanup must reach every process
                self.stop(proc, timeout=5.0)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _proc_tree(pid: int) -> list[int]:
    """pid and its descendants (threads are already inside /proc/PID/stat)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as fh:
                todo.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process tree, from /proc/PID/stat (fields 14 and 15)."""
    total = 0
    for p in _proc_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


def rss_mb(pid: int) -> float:
    """Resident memory of a process tree in MiB (VmRSS)."""
    kib = 0
    for p in _proc_tree(pid):
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        kib += int(line.split()[1])
                        break
        except OSError:
            continue
    return kib / 1024


def idle_cpu_rate(pid: int, seconds: float = 1.5) -> float:
    """CPU seconds per second the process burns with no traffic (timers, pollers)."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return max(0.0, (cpu_seconds(pid) - c0) / (time.monotonic() - t0))
