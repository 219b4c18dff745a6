"""Fixtures for the platform tests (helpers in platform_support.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from platform_support import ConvergedHome, FakeMac, HealthServer


@pytest.fixture(scope="session")
def health_server() -> Iterator[HealthServer]:
    """A stand-in for a healthy proxy on a free loopback port."""
    with HealthServer() as server:
        yield server


@pytest.fixture(scope="session")
def darwin_home(tmp_path_factory: pytest.TempPathFactory, health_server: HealthServer) -> ConvergedHome:
    """A scratch home converged twice along the Darwin path (no GUI session, as over SSH)."""
    mac = FakeMac(tmp_path_factory.mktemp("darwin"))
    mac.write_user_rc_files(".zshrc", ".bashrc")
    mac.write_key_files()
    first = mac.converge(port=health_server.port)
    assert first.returncode == 0, first.tail()
    calls = mac.calls()
    return ConvergedHome(mac, first, calls, mac.converge(port=health_server.port))


@pytest.fixture(scope="session")
def debian_home(tmp_path_factory: pytest.TempPathFactory, health_server: HealthServer) -> FakeMac:
    """A scratch home converged along this machine's own (Debian) path: shell files only."""
    home = FakeMac(tmp_path_factory.mktemp("debian"), fake_darwin=False)
    home.write_user_rc_files(".zshrc", ".bashrc")
    home.write_key_files()
    run = home.converge(port=health_server.port)
    assert run.returncode == 0, run.tail()
    return home


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
