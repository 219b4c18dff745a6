"""make bench reads the no-op re-run from Molecule's log, in both of Molecule's step formats."""

from __future__ import annotations

import pytest

from bench.provisioning import parse_molecule_log

PLAY = """TASK [ccq : The settings are read] **********************************************
ok: [ccq-default]
PLAY RECAP *********************************************************************
ccq-default                : ok=92   changed=0    unreachable=0    failed=0    skipped=36   rescued=0    ignored=0
TASKS RECAP ********************************************************************
Monday 07 December 2026  21:48:56 +0000 (0:00:00.426)       0:02:50.592 *******
===============================================================================
litellm_proxy : The package the callback imports sits beside it (ccq_proxy/) -- 19.84s
"""

# On a terminal Molecule writes "default ➜ idempotence: Executing"; into a pipe, as
# `make molecule` keeps each scenario's log, "[default > idempotence] Executing".
FORMATS = {
    "terminal": ("INFO     {scenario} ➜ {action}: Executing", "INFO     {scenario} ➜ {action}: Executed: Successful"),
    "piped": ("INFO     [{scenario} > {action}] Executing", "INFO     [{scenario} > {action}] Executed: Successful"),
}


@pytest.mark.parametrize("style", sorted(FORMATS))
def test_the_idempotence_step_of_the_scenario_is_read(style: str) -> None:
    start, end = FORMATS[style]
    log = "\n".join([start.format(scenario="fleet", action="idempotence"), PLAY.replace("02:50", "09:59"),
                     end.format(scenario="fleet", action="idempotence"),
                     start.format(scenario="default", action="idempotence"), PLAY,
                     end.format(scenario="default", action="idempotence")])
    noop = parse_molecule_log(log, "default")["idempotence"]
    assert (noop["total_seconds"], noop["changed"], noop["status"]) == (170.6, 0, "Successful")
