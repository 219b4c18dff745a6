"""Cached installs of the pinned LiteLLM and Claude Code for the test suite.

The integration tests need the exact versions ccq deploys, not whatever the
test venv happens to hold, so they build their own copies under
``<repo>/.cache/`` (git-ignored), keyed by a hash of the pins, and reuse them
on the next run.  The pins are read from roles/ccq/defaults/main.yml, the single place
the playbook reads them from as well.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache"

COMPLETE_MARKER = ".ccq-complete"


@dataclass(frozen=True)
class Pins:
    """The versions ccq deploys."""

    litellm_version: str
    openai_spec: str
    claude_code_version: str


def _load_yaml(path: Path) -> dict[str, Any]:
    """safe_load a role defaults file; {} when missing or unreadable."""
    try:
        import yaml  # PyYAML: in requirements-dev.txt
    except ImportError:
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def read_pins(repo_root: Path = REPO_ROOT) -> Pins:
    """The pins the playbook installs: roles/ccq/defaults/main.yml is their single source."""
    defaults_file = repo_root / "roles/ccq/defaults/main.yml"
    defaults = _load_yaml(defaults_file)
    try:
        return Pins(
            litellm_version=str(defaults["ccq_litellm_version"]),
            openai_spec=str(defaults["ccq_openai_version_spec"]),
            claude_code_version=str(defaults["ccq_claude_code_version"]),
        )
    except KeyError as missing:
        raise RuntimeError(f"{defaults_file} lacks {missing}: the tests install what the playbook pins") from None


def versions_off_pin(pip_show: str, pins: Pins) -> list[str]:
    """What ``pip show litellm openai`` output says is not at ccq's pins ([] when both are)."""
    shown = dict(zip(re.findall(r"(?m)^Name: (\S+)", pip_show), re.findall(r"(?m)^Version: (\S+)", pip_show)))
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
    return cache_dir / f"litellm-venv-{_short_hash(pins.litellm_version, pins.openai_spec, py)}"


def ensure_litellm_venv(pins: Pins, cache_dir: Path = CACHE_DIR, python: str | None = None) -> Path:
    """A venv with litellm[proxy]==<pin> and openai<spec>; returns its directory.

    Built with the interpreter running the tests (the host python3), reused
    when its completion marker exists.
    """
    venv = litellm_venv_dir(pins, cache_dir)
    if (venv / COMPLETE_MARKER).exists():
        return venv
    with _locked(cache_dir / (venv.name + ".lock")):
        if (venv / COMPLETE_MARKER).exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        log = cache_dir / (venv.name + ".log")
        _run([python or sys.executable, "-m", "venv", str(venv)], log)
        pip = [str(venv / "bin/python"), "-m", "pip", "install", "--disable-pip-version-check"]
        # openai is pinned in the same resolver run: 1.100.x breaks LiteLLM
        # 1.74 (ImportError: ResponseTextConfig).
        _run(pip + [f"litellm[proxy]=={pins.litellm_version}", f"openai{pins.openai_spec}"], log)
        (venv / COMPLETE_MARKER).write_text(f"{pins.litellm_version} openai{pins.openai_spec}\n")
    return venv


def claude_code_dir(pins: Pins, cache_dir: Path = CACHE_DIR) -> Path:
    return cache_dir / f"claude-code-{pins.claude_code_version}"


def claude_binary(prefix: Path) -> Path:
    return prefix / "node_modules/.bin/claude"


def ensure_claude_code(pins: Pins, cache_dir: Path = CACHE_DIR) -> Path:
    """The pinned Claude Code installed with npm into its own prefix.

    npm 11 skips install scripts not listed in allow-scripts (npm 9 runs
    them).  The 2.x package's bin/claude.exe is a stub until its postinstall
    (install.cjs) hard-links the native binary from the platform package, so
    the install skips scripts everywhere and runs exactly that one itself.
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
        _run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
              "--ignore-scripts", f"@anthropic-ai/claude-code@{pins.claude_code_version}"], log)
        package = prefix / "node_modules/@anthropic-ai/claude-code"
        if (package / "install.cjs").exists():
            _run(["node", "install.cjs"], log, cwd=package)
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
