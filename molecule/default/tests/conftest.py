"""Molecule's verify of the default scenario: the converged-host checks of tests/converged_host
(molecule.yml's additional_files_or_dirs) and this scenario's own tests beside this file. The
shared helpers are in tests/helpers (pytest.ini's pythonpath): a second conftest module in the
same run makes ``from conftest import`` ambiguous."""

from __future__ import annotations

from pathlib import Path

import pytest

CONVERGED_HOST_TESTS = Path(__file__).resolve().parents[3] / "tests/converged_host"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The converged-host checks run first, on the target as converge left it: the tests here
    # stop, break and rotate things, and test_secrets searches the journal and the logs for
    # keys after the traffic those checks made.
    items.sort(key=lambda item: CONVERGED_HOST_TESTS not in item.path.parents)
