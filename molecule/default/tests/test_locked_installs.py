"""The converged target's LiteLLM venv is the committed lock's: every distribution pip reports in
it is the lock's version for the target's Python and platform, nothing else but the installer;
pipx installed it (issue 23) from the wheelhouse that keeps the lock it was filled from, and
`litellm` on the user's PATH is pipx's link into it."""

from __future__ import annotations

import json

from helpers.converged_host import as_user, converged_host
from scripts.locks import litellm_lock, read_pins, venv_differences_from_lock

TARGET = converged_host()
VENV = TARGET.path("litellm_venv")
LOCK = litellm_lock()


def test_litellms_venv_holds_exactly_the_lock(host):
    inspect = host.run(as_user(f"{VENV}/bin/python -m pip --disable-pip-version-check inspect"))
    assert inspect.rc == 0, inspect.stderr
    assert venv_differences_from_lock(inspect.stdout, LOCK) == []


def test_the_wheelhouse_keeps_the_lock_it_was_filled_from(host):
    kept = host.file(f"{TARGET.path('litellm_wheelhouse')}/{LOCK.path.name}")
    assert kept.exists
    assert kept.content_string == LOCK.path.read_text(encoding="utf-8")


def test_pipx_lists_litellm_at_the_pin_installed_from_the_wheelhouse_alone(host):
    listed = host.run(as_user("pipx list --json"))
    assert listed.rc == 0, listed.stderr
    metadata = json.loads(listed.stdout)["venvs"]["litellm"]["metadata"]["main_package"]
    assert metadata["package_version"] == read_pins().litellm_version
    assert metadata["pip_args"] == ["--no-index", "--find-links", TARGET.path("litellm_wheelhouse")]


def test_litellm_on_the_path_runs_the_venvs(host):
    command = host.file(f"{TARGET.path('bin_dir')}/litellm")
    assert command.is_symlink
    assert command.linked_to == f"{VENV}/bin/litellm"
