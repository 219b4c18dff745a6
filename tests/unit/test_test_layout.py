"""Each test directory is run by exactly one make target, and tests/unit stays in-process.

`make test` runs the targets in TEST_STAGES; a directory no target names would never run, and one
two targets name would run twice. Molecule runs molecule/*/tests and tests/converged_host itself.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
PYTEST_TARGETS = ("unit", "playbook", "integration")
# Run by Molecule's verifier (molecule/default/molecule.yml), not by pytest from the tree.
MOLECULE_ONLY = {"tests/converged_host"}
# What makes a test need a process or a play: it belongs in tests/integration or tests/playbook.
OUT_OF_PROCESS = ("pytest.mark.integration", "run_playbook(", "run_select_model(", "LiteLLMProxy(", "FakeUpstream(")


def makefile() -> str:
    return (REPO / "Makefile").read_text()


def target_paths(target: str) -> list[str]:
    """The paths the target's pytest line names."""
    recipe = re.search(rf"(?m)^{target}: .*\n\t\$\(PYTEST\) (.*)$", makefile())
    assert recipe, f"make {target} runs no pytest line"
    return [word for word in recipe.group(1).split() if word.startswith("tests/")]


def test_every_test_directory_is_run_by_exactly_one_target() -> None:
    holding = {str(path.parent.relative_to(REPO)) for path in TESTS.rglob("test_*.py")
               if ".pytest_cache" not in path.parts}
    named = [path for target in PYTEST_TARGETS for path in target_paths(target)]
    assert sorted(named) == sorted(set(named)), f"a directory is named by two targets: {named}"
    assert holding - MOLECULE_ONLY == set(named)


def test_make_test_runs_every_pytest_target() -> None:
    stages = re.search(r"(?m)^TEST_STAGES := (.*)$", makefile())
    assert stages and set(PYTEST_TARGETS) <= set(stages.group(1).split())


def test_unit_tests_start_no_process_and_no_play() -> None:
    found = {(str(path.relative_to(REPO)), marker) for path in (TESTS / "unit").glob("test_*.py")
             for marker in OUT_OF_PROCESS if path != Path(__file__) and marker in path.read_text()}
    assert found == set()


def test_integration_tests_carry_the_integration_marker() -> None:
    unmarked = [path.name for path in (TESTS / "integration").glob("test_*.py")
                if "pytestmark = pytest.mark.integration" not in path.read_text()]
    assert unmarked == []
