"""Fixtures for the platform tests (helpers in platform_support.py)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from platform_support import DarwinConverges, converge_darwin_four_times


@pytest.fixture(scope="session")
def darwin(tmp_path_factory: pytest.TempPathFactory) -> DarwinConverges:
    """A scratch Mac converged four times (see DarwinConverges)."""
    return converge_darwin_four_times(tmp_path_factory.mktemp("darwin"))


@pytest.fixture(scope="session")
def zsh() -> str:
    """zsh, installed from Debian packages when missing (the tests run as root in CI)."""
    found = shutil.which("zsh")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("zsh is missing and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "zsh"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, capture_output=True)
        subprocess.run(install, env=env, check=True, capture_output=True)
    found = shutil.which("zsh")
    assert found, "apt-get installed zsh but it is not on PATH"
    return found
