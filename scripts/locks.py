"""The pins ccq deploys and the locks it installs them from, read where the roles keep them.

One reader for the roles, `make lock-*` (this file's command line) and the tests: the pins are
in roles/ccq/defaults/main.yml, LiteLLM's lock and pip arguments in roles/litellm_proxy/vars,
Claude Code's lock and npm command lines in roles/claude_code.

    python3 scripts/locks.py litellm-lock-path      the lock `make lock-litellm` writes
    python3 scripts/locks.py litellm-lock-inputs    what it resolves, one requirement a line
    python3 scripts/locks.py claude-code-spec [V]   <package>@<version> for `make lock-claude-code`
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# packaging: what pip itself uses for names, versions and markers (ansible-core requires it).
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[1]
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
        return LiteLLMLock(path=role / role_vars["litellm_proxy_lock_file"],
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


def main(argv: list[str]) -> int:
    commands = {
        "litellm-lock-path": lambda: print(litellm_lock().path),
        "litellm-lock-inputs": lambda: print(*litellm_lock_inputs(), sep="\n"),
        "claude-code-spec": lambda: print(claude_code_spec(*argv[2:3])),
    }
    if len(argv) < 2 or argv[1] not in commands:
        print(f"usage: {argv[0]} {{{','.join(commands)}}} [version]", file=sys.stderr)
        return 2
    commands[argv[1]]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
