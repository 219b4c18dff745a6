"""Cached installs of the pinned LiteLLM and Claude Code for the test suite.

The integration tests need the exact versions ccq deploys, not whatever the
test venv happens to hold, so they build their own copies under
``<repo>/.cache/`` (git-ignored), keyed by a hash of the pins and locks, and reuse
them on the next run.  The pins are read from roles/ccq/defaults/main.yml, the single place
the playbook reads them from as well; LiteLLM comes from roles/litellm_proxy's committed
lock and Claude Code from roles/claude_code's, each installed with the role's own
command lines.

Run ``python3 tests/helpers/installs.py`` to prepare both caches ahead of a
test run (``make test`` does not need it: the fixtures build on first use).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parents[2]) not in sys.path:  # run as a script: the repository's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

# What the roles pin and lock, read where they keep it (scripts/locks.py, which `make lock-*` runs).
from scripts.locks import (
    CLAUDE_CODE_LOCK_DIR,
    CLAUDE_CODE_LOCK_FILES,
    REPO_ROOT,
    Pins,
    claude_code_install,
    litellm_lock,
    read_pins,
)

CACHE_DIR = REPO_ROOT / ".cache"
COMPLETE_MARKER = ".ccq-complete"


def versions_off_pin(pip_show: str, pins: Pins) -> list[str]:
    """What ``pip show litellm openai`` output says is not at ccq's pins ([] when both are)."""
    shown = dict(zip(re.findall(r"(?m)^Name: (\S+)", pip_show), re.findall(r"(?m)^Version: (\S+)", pip_show),
                     strict=False))
    low, high = re.fullmatch(r">=([\d.]+),<([\d.]+)", pins.openai_spec).groups()
    as_tuple = lambda version: tuple(int(part) for part in version.split("."))  # noqa: E731
    problems = []
    if shown.get("litellm") != pins.litellm_version:
        problems.append(f"litellm {shown.get('litellm')} is not {pins.litellm_version}")
    if not as_tuple(low) <= as_tuple(shown.get("openai", "0")) < as_tuple(high):
        problems.append(f"openai {shown.get('openai')} is outside {pins.openai_spec}")
    return problems


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock, so parallel test runs do not build one cache twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str], log: Path, **kwargs: Any) -> None:
    """Run an install step; its output goes to a log file, shown on failure."""
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False, **kwargs)
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"install step failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")


def litellm_venv_dir(pins: Pins, cache_dir: Path = CACHE_DIR) -> Path:
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    lock = litellm_lock()
    return cache_dir / "litellm-venv-{}".format(_short_hash(
        pins.litellm_version, pins.openai_spec, lock.path.read_text(encoding="utf-8"), *lock.pip_args, py))


def ensure_litellm_venv(pins: Pins, cache_dir: Path = CACHE_DIR, python: str | None = None) -> Path:
    """A venv installed from LiteLLM's lock, as roles/litellm_proxy installs it; returns its directory.

    Built with the interpreter running the tests (the host python3), reused
    when its completion marker exists; the directory's name holds the lock's hash.
    """
    venv = litellm_venv_dir(pins, cache_dir)
    if (venv / COMPLETE_MARKER).exists():
        return venv
    with _locked(cache_dir / (venv.name + ".lock")):
        if (venv / COMPLETE_MARKER).exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        log = cache_dir / (venv.name + ".log")
        lock = litellm_lock()
        _run([python or sys.executable, "-m", "venv", str(venv)], log)
        _run([str(venv / "bin/python"), "-m", "pip", "install", *lock.pip_args, "-r", str(lock.path)], log)
        (venv / COMPLETE_MARKER).write_text(f"{lock.path.relative_to(REPO_ROOT)}\n")
    return venv


def claude_code_dir(pins: Pins, cache_dir: Path = CACHE_DIR) -> Path:
    lock_hash = _short_hash(*((CLAUDE_CODE_LOCK_DIR / name).read_text(encoding="utf-8")
                              for name in CLAUDE_CODE_LOCK_FILES))
    return cache_dir / f"claude-code-{pins.claude_code_version}-{lock_hash}"


def claude_binary(prefix: Path) -> Path:
    return prefix / "node_modules/.bin/claude"


def ensure_claude_code(pins: Pins, cache_dir: Path = CACHE_DIR) -> Path:
    """Claude Code installed from the committed lock into its own prefix, as roles/claude_code does.

    The role's npm ci command (every tarball checked against the lock's
    integrity, install scripts skipped), then Claude Code's postinstall
    (bin/claude.exe is a stub until it links the native binary from the
    platform package).  The cache directory's name holds the lock's hash.
    """
    prefix = claude_code_dir(pins, cache_dir)
    binary = claude_binary(prefix)
    if (prefix / COMPLETE_MARKER).exists() and binary.exists():
        return binary
    with _locked(cache_dir / (prefix.name + ".lock")):
        if (prefix / COMPLETE_MARKER).exists() and binary.exists():
            return binary
        shutil.rmtree(prefix, ignore_errors=True)
        prefix.mkdir(parents=True)
        log = cache_dir / (prefix.name + ".log")
        install = claude_code_install()
        for name in CLAUDE_CODE_LOCK_FILES:
            shutil.copyfile(CLAUDE_CODE_LOCK_DIR / name, prefix / name)
        _run(install.npm_ci_argv, log, cwd=prefix)
        _run(install.postinstall_argv, log, cwd=prefix / "node_modules" / install.package)
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                             check=False, env=dict(os.environ, DISABLE_AUTOUPDATER="1"))
        if pins.claude_code_version not in out.stdout:
            raise RuntimeError(f"{binary} --version said {out.stdout!r} {out.stderr[-500:]!r}")
        (prefix / COMPLETE_MARKER).write_text(out.stdout)
    return binary


if __name__ == "__main__":
    pins = read_pins()
    print(ensure_litellm_venv(pins))
    print(ensure_claude_code(pins))
