"""Fixtures of the converged-host checks (test_converged_host.py): the host comes from testinfra
(--hosts), its settings from helpers.converged_host."""

from __future__ import annotations

from typing import Any

import pytest

from helpers.converged_host import converged_host, upstream_requests


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "service_manager(name): only where the proxy runs under that "
                                       "service manager (systemd, launchd)")
    try:
        converged_host()
    except RuntimeError as missing:
        raise pytest.UsageError(str(missing)) from None


@pytest.fixture(scope="module")
def service_manager(host: Any) -> str:
    """What keeps the proxy running, as roles/litellm_service/tasks/manager.yml decides it (Ansible's
    service_mgr fact: systemd where /run/systemd/system is a directory)."""
    if host.system_info.type == "darwin":
        return "launchd"
    return "systemd" if host.file("/run/systemd/system").is_directory else "none"


@pytest.fixture(autouse=True)
def _only_under_its_service_manager(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("service_manager")
    if marker:
        manager = request.getfixturevalue("service_manager")
        if manager != marker.args[0]:
            pytest.skip(f"{marker.args[0]} only; the proxy here runs under {manager}")


@pytest.fixture()
def upstream_mark(host: Any) -> int:
    """How many upstream requests happened before the test."""
    return len(upstream_requests(host))
