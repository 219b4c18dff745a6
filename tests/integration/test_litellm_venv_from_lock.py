"""The LiteLLM venv the integration tests run (tests/helpers/installs.py, built from the role's lock
with the role's pip arguments) holds exactly the lock; the role's own probe, which decides
whether a provisioning run installs, agrees on that venv and notices a version the lock moved."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from scripts.locks import LITELLM_PROXY_ROLE, litellm_lock, read_requirements_lock, venv_differences_from_lock

pytestmark = pytest.mark.integration

ROLE_VARS = yaml.safe_load((LITELLM_PROXY_ROLE / "vars/main.yml").read_text(encoding="utf-8"))


def test_the_cached_venv_holds_exactly_the_lock(litellm_venv: Path):
    inspect = subprocess.run([str(litellm_venv / "bin/python"), "-m", "pip", "inspect"],
                             capture_output=True, text=True, check=True)
    assert venv_differences_from_lock(inspect.stdout) == []


def role_probe(venv: Path, locked_lines: list[str], pipx: dict | None = None) -> dict:
    """roles/litellm_proxy's lock probe, run as install.yml runs it (litellm_proxy_lock_probe_argv);
    ``pipx``: what pipx must have recorded (None: not asked, as for this venv pip built)."""
    expected = {"installer": ROLE_VARS["litellm_proxy_venv_installer_packages"], "pipx": pipx}
    probe = subprocess.run([str(venv / "bin/python"), "-c", ROLE_VARS["litellm_proxy_lock_probe"],
                            json.dumps(expected), *locked_lines],
                           capture_output=True, text=True, check=True)
    return json.loads(probe.stdout)


def test_the_roles_probe_finds_the_cached_venv_at_the_lock_and_a_moved_version(litellm_venv: Path, pins):
    entries = read_requirements_lock(litellm_lock().path.read_text(encoding="utf-8"))
    lines = [f"{entry.name}=={entry.version}" + (f" ; {entry.marker}" if entry.marker else "") for entry in entries]
    assert role_probe(litellm_venv, lines) == {"litellm": pins.litellm_version,
                                               "openai": next(e.version for e in entries if e.name == "openai"),
                                               "differences": []}
    moved = ["jiter==0.0.1" if line.startswith("jiter==") else line for line in lines]
    differences = role_probe(litellm_venv, moved)["differences"]
    assert len(differences) == 1 and differences[0].startswith("jiter==0.0.1")
    dropped = [line for line in lines if not line.startswith("tqdm==")]
    assert role_probe(litellm_venv, dropped)["differences"] == [
        next(f"tqdm {e.version} (not in the lock)" for e in entries if e.name == "tqdm")]


def test_the_roles_probe_finds_a_venv_pipx_did_not_install_from_the_wheelhouse(litellm_venv: Path, pins):
    """The venv ccq built itself before pipx (no pipx_metadata.json) is not at the lock for a run:
    the run migrates it to pipx."""
    entries = read_requirements_lock(litellm_lock().path.read_text(encoding="utf-8"))
    lines = [f"{entry.name}=={entry.version}" + (f" ; {entry.marker}" if entry.marker else "") for entry in entries]
    spec, injected = f"litellm[proxy]=={pins.litellm_version}", ["json-repair==0.64.9"]
    differences = role_probe(litellm_venv, lines, {"spec": spec, "pip_args": ["--no-index", "--find-links", "/w"],
                                                   "injected": injected})
    assert differences["differences"] == [
        f"pipx's record: none with pip arguments [], injected [] (ccq's: {spec} and {injected} from its wheelhouse)"]
