"""Talking to the machine: HTTP, commands, files, and processes and sockets from /proc."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccq_doctor.parsing import SECRET_ENV_NAMES, Listener, fingerprint, option_value, parse_proc_net_tcp, runs_litellm


@dataclass
class HttpResult:
    """The outcome of one GET: a status, or the kind of network failure."""

    status: int | None = None
    body: bytes = b""
    error_kind: str = ""  # dns | tls | refused | timeout | network
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def classify_network_error(exc: BaseException) -> tuple[str, str]:
    """(kind, text) for an exception urllib raised while connecting."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, socket.gaierror):
        return "dns", f"name resolution failed ({reason.strerror or reason})"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return "tls", f"TLS certificate not trusted ({getattr(reason, 'verify_message', None) or reason})"
    if isinstance(reason, ssl.SSLError):
        return "tls", f"TLS handshake failed ({reason})"
    if isinstance(reason, ConnectionRefusedError):
        return "refused", "connection refused"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timeout", "timed out"
    return "network", str(reason)


def http_get(url: str, headers: Mapping[str, str] | None = None, timeout: float = 5.0,
             cafile: str | None = None, proxies: Mapping[str, str] | None = None) -> HttpResult:
    """GET ``url``; loopback URLs never go through a proxy (as curl --noproxy in ccq)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):
        proxies = {}
    # ProxyHandler() with no argument takes the proxies from this process's environment.
    handlers: list[Any] = [urllib.request.ProxyHandler(dict(proxies)) if proxies is not None
                           else urllib.request.ProxyHandler()]
    if url.startswith("https:"):
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=cafile)))
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, headers=dict(headers or {}), method="GET")
    try:
        with opener.open(request, timeout=timeout) as response:
            return HttpResult(status=response.status, body=response.read())
    except urllib.error.HTTPError as exc:
        return HttpResult(status=exc.code, body=exc.read() or b"")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        kind, text = classify_network_error(exc)
        return HttpResult(error_kind=kind, error=text)


def run(argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 20.0,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; a missing program or a timeout is an rc of 127 / 124, not an exception."""
    try:
        return subprocess.run(list(argv), env=dict(env) if env is not None else None, cwd=cwd,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, start_new_session=True)
    except FileNotFoundError:
        return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: not found")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(list(argv), 124, "", f"{argv[0]}: timed out after {timeout:.0f}s")


def read_text(path: Path, limit: int | None = None) -> str | None:
    """A file's text (its last ``limit`` bytes when given), None when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            if limit is not None:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(fh.tell() - limit, 0))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return None


def read_secret(path: Path) -> str:
    """A key file's first line, stripped; "" when missing or unreadable."""
    text = read_text(path)
    return text.splitlines()[0].strip() if text and text.strip() else ""


@dataclass
class Process:
    """A running process, from /proc."""

    pid: int
    argv: list[str]
    started: float  # epoch seconds
    environ: dict[str, str] = field(default_factory=dict)  # only SECRET_ENV_NAMES, fingerprinted

    @property
    def uptime(self) -> float:
        return time.time() - self.started


def _boot_time(proc: Path) -> float:
    text = read_text(proc / "stat") or ""
    match = re.search(r"^btime (\d+)", text, re.M)
    return float(match.group(1)) if match else 0.0


def read_process(pid: int, proc: Path = Path("/proc")) -> Process | None:
    """The process ``pid`` when it exists, with the fingerprints of the keys in its environment."""
    try:
        raw_argv = (proc / str(pid) / "cmdline").read_bytes()
        stat_text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    argv = [a.decode("utf-8", "replace") for a in raw_argv.split(b"\0") if a]
    if not argv:  # a zombie
        return None
    fields = stat_text[stat_text.rfind(")") + 2:].split()
    started = _boot_time(proc) + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    environ: dict[str, str] = {}
    try:
        for item in (proc / str(pid) / "environ").read_bytes().split(b"\0"):
            name, _, value = item.decode("utf-8", "replace").partition("=")
            if name in SECRET_ENV_NAMES:
                environ[name] = fingerprint(value) or ""
    except OSError:
        pass
    return Process(pid, argv, started, environ)


def child_pids(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """``pid`` and all its descendants (uvicorn workers)."""
    parents: dict[int, list[int]] = {}
    for entry in proc.glob("[0-9]*"):
        text = read_text(entry / "stat")
        if text:
            fields = text[text.rfind(")") + 2:].split()
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def socket_inodes(pids: Iterable[int], proc: Path = Path("/proc")) -> set[int]:
    """The socket inodes the processes hold open (readable for our own processes)."""
    inodes = set()
    for pid in pids:
        try:
            fds = list((proc / str(pid) / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            match = re.fullmatch(r"socket:\[(\d+)\]", target)
            if match:
                inodes.add(int(match.group(1)))
    return inodes


def listeners(proc: Path = Path("/proc")) -> list[Listener]:
    """Every listening TCP socket in this network namespace."""
    found: list[Listener] = []
    for name in ("tcp", "tcp6"):
        text = read_text(proc / "net" / name)
        if text:
            found.extend(parse_proc_net_tcp(text))
    return found


def is_litellm(process: Process) -> bool:
    """Whether the process is a LiteLLM proxy (python .../bin/litellm ...)."""
    return runs_litellm(process.argv)


def find_litellm_processes(config_path: Path, proc: Path = Path("/proc")) -> list[Process]:
    """Our own LiteLLM processes started with ccq's config (when no pidfile/unit names one)."""
    found = []
    for entry in proc.glob("[0-9]*"):
        try:
            if entry.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        process = read_process(int(entry.name), proc)
        if process and is_litellm(process) and option_value(process.argv, "--config") == str(config_path):
            found.append(process)
    return found
