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
import json
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

# packaging: what pip itself uses for names, versions and markers (ansible-core requires it).
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache"

COMPLETE_MARKER = ".ccq-complete"
LITELLM_PROXY_ROLE = REPO_ROOT / "roles/litellm_proxy"
CLAUDE_CODE_ROLE = REPO_ROOT / "roles/claude_code"
# The committed lock roles/claude_code installs from (make lock-claude-code).
CLAUDE_CODE_LOCK_DIR = CLAUDE_CODE_ROLE / "files/claude-code-lock"
CLAUDE_CODE_LOCK_FILES = ("package.json", "package-lock.json")


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


@dataclass(frozen=True)
class LiteLLMLock:
    """How roles/litellm_proxy installs LiteLLM (its vars/main.yml): the lock and pip's arguments."""

    path: Path
    pip_args: list[str]
    # What `python -m venv` puts into a venv besides the lock (pip, setuptools on 3.11).
    venv_installer_packages: frozenset[str]


def litellm_lock(role: Path = LITELLM_PROXY_ROLE) -> LiteLLMLock:
    """The role's lock and pip arguments, read from the role: the tests install the same."""
    role_vars = _load_yaml(role / "vars/main.yml")
    try:
        return LiteLLMLock(path=role / "files" / role_vars["litellm_proxy_lock_file"],
                           pip_args=list(role_vars["litellm_proxy_lock_pip_args"]),
                           venv_installer_packages=frozenset(role_vars["litellm_proxy_venv_installer_packages"]))
    except KeyError as missing:
        raise RuntimeError(f"{role} lacks {missing}: the tests install the way the role does") from None


def litellm_lock_inputs(pins: Pins | None = None) -> list[str]:
    """What ``make lock-litellm`` resolves: ccq's pins of litellm and openai."""
    pins = pins or read_pins()
    return [
        # Without the [proxy] extra, `litellm` fails at start: No module named 'websockets'.
        f"litellm[proxy]=={pins.litellm_version}",
        # In the same resolution: openai 1.100.x breaks LiteLLM 1.74 (ImportError: ResponseTextConfig).
        f"openai{pins.openai_spec}",
        # ccq's own: the wire writer repairs broken tool-call JSON with it (ccq_proxy/anthropic_wire.py).
        "json-repair==0.64.9",
    ]


@dataclass(frozen=True)
class LockedDistribution:
    """One entry of a requirements lock: ``name==version ; marker`` and its ``--hash`` options."""

    name: str  # normalized (PEP 503), as pip compares names
    version: str
    marker: str  # "" when the entry applies to every Python and platform
    hashes: tuple[str, ...]


def read_requirements_lock(text: str) -> list[LockedDistribution]:
    """The entries of a ``--generate-hashes`` lock; ValueError for one that pins no exact version."""
    entries = []
    for logical_line in re.sub(r"\\\n", " ", text).splitlines():
        line = re.sub(r"(^|\s)#.*", "", logical_line).strip()
        if not line:
            continue
        hashes = tuple(re.findall(r"--hash=(\S+)", line))
        requirement = Requirement(re.sub(r"--hash=\S+", "", line).strip())
        pinned = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if len(requirement.specifier) != 1 or len(pinned) != 1:
            raise ValueError(f"{line!r} is not pinned to one version (name==version)")
        entries.append(LockedDistribution(canonicalize_name(requirement.name), pinned[0],
                                          str(requirement.marker or ""), hashes))
    return entries


def lock_differences(lock: list[LockedDistribution], installed: list[tuple[str, str]],
                     environment: dict[str, str], ignored: frozenset[str] = frozenset()) -> list[str]:
    """How ``installed`` (name, version of every distribution in a venv) differs from ``lock``
    for a Python whose PEP 508 marker environment is ``environment`` ([] when it holds exactly
    the lock's distributions that apply there, besides the ``ignored`` names)."""
    wanted = {entry.name: entry.version for entry in lock
              if not entry.marker or Marker(entry.marker).evaluate(environment)}
    found: dict[str, list[str]] = {}
    for name, version in installed:
        found.setdefault(canonicalize_name(name), []).append(version)
    ignored = {canonicalize_name(name) for name in ignored}
    differences = [f"{name}=={version}: {' and '.join(found[name]) if name in found else 'not'} installed"
                   for name, version in sorted(wanted.items()) if found.get(name) != [version]]
    differences += [f"{name} {' and '.join(versions)}: installed, not in the lock"
                    for name, versions in sorted(found.items()) if name not in wanted and name not in ignored]
    return differences


def venv_differences_from_lock(pip_inspect: str, lock: LiteLLMLock | None = None) -> list[str]:
    """How a venv, as ``<venv>/bin/python -m pip inspect`` reports it (every installed
    distribution and the interpreter's marker environment), differs from LiteLLM's lock."""
    lock = lock or litellm_lock()
    report = json.loads(pip_inspect)
    installed = [(entry["metadata"]["name"], entry["metadata"]["version"]) for entry in report["installed"]]
    return lock_differences(read_requirements_lock(lock.path.read_text(encoding="utf-8")), installed,
                            report["environment"], lock.venv_installer_packages)


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


@dataclass(frozen=True)
class ClaudeCodeInstall:
    """How roles/claude_code installs Claude Code (its defaults and vars/main.yml)."""

    package: str
    npm_ci_argv: list[str]
    postinstall_argv: list[str]


def claude_code_install(role: Path = CLAUDE_CODE_ROLE) -> ClaudeCodeInstall:
    """The role's package name and command lines, read from the role: the tests run the same."""
    defaults, role_vars = _load_yaml(role / "defaults/main.yml"), _load_yaml(role / "vars/main.yml")
    try:
        return ClaudeCodeInstall(package=defaults["claude_code_package"],
                                 npm_ci_argv=list(role_vars["claude_code_npm_ci_argv"]),
                                 postinstall_argv=list(role_vars["claude_code_postinstall_argv"]))
    except KeyError as missing:
        raise RuntimeError(f"{role} lacks {missing}: the tests install the way the role does") from None


def claude_code_lock(lock_dir: Path = CLAUDE_CODE_LOCK_DIR) -> dict[str, Any]:
    """The committed package-lock.json."""
    return json.loads((lock_dir / "package-lock.json").read_text(encoding="utf-8"))


def claude_code_spec(version: str = "") -> str:
    """``<package>@<version>`` for ``make lock-claude-code``: ccq's pin unless a version is given."""
    return f"{claude_code_install().package}@{version or read_pins().claude_code_version}"


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
