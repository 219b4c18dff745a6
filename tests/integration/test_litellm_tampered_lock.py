"""A file whose sha256 is not the lock's never reaches pipx (issue 23): the role's wheelhouse
command (pip wheel with litellm_proxy_lock_pip_args) refuses it, and the pattern the role's
one-line failure is made from (litellm_proxy_pip_hash_mismatch) names it. The untampered entry
passes the same command. On a converged target: molecule/fleet's tampered-lock test."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts.locks import LITELLM_PROXY_ROLE, litellm_lock, read_requirements_lock

pytestmark = pytest.mark.integration

ROLE_VARS = yaml.safe_load((LITELLM_PROXY_ROLE / "vars/main.yml").read_text(encoding="utf-8"))


def wheelhouse(lock_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The role's "The lock's files are in the wheelhouse" command, on ``lock_text``."""
    lock = tmp_path / "lock.txt"
    lock.write_text(lock_text, encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "--quiet",
                           *ROLE_VARS["litellm_proxy_lock_pip_args"], "--requirement", str(lock),
                           "--wheel-dir", str(tmp_path / "wheels")],
                          capture_output=True, text=True, timeout=600, check=False)


def one_entry(name: str, hashes: tuple[str, ...]) -> str:
    entry = next(e for e in read_requirements_lock(litellm_lock().path.read_text(encoding="utf-8")) if e.name == name)
    return f"{entry.name}=={entry.version} " + " ".join(f"--hash={h}" for h in hashes) + "\n"


def test_a_file_whose_hash_is_not_the_locks_is_refused_and_named(tmp_path: Path):
    result = wheelhouse(one_entry("idna", ("sha256:" + "0" * 64,)), tmp_path)
    assert result.returncode != 0
    version = next(e.version for e in read_requirements_lock(litellm_lock().path.read_text(encoding="utf-8"))
                   if e.name == "idna")
    mismatches = re.findall(ROLE_VARS["litellm_proxy_pip_hash_mismatch"], result.stderr)
    assert mismatches == [f"idna=={version}"], result.stderr
    assert not list((tmp_path / "wheels").glob("*.whl"))


def test_the_locks_own_entry_passes_the_same_command(tmp_path: Path):
    entry = next(e for e in read_requirements_lock(litellm_lock().path.read_text(encoding="utf-8")) if e.name == "idna")
    result = wheelhouse(one_entry("idna", entry.hashes), tmp_path)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in (tmp_path / "wheels").glob("idna-*.whl")]
