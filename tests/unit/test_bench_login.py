"""make bench's table of the first ccq after a login (bench/login.py measures, bench/report.py shows)."""

from __future__ import annotations

from bench.report import login_table

FIGURES = {"warm": {"seconds": [1.4, 1.5], "median": 1.45},
           "after_2s": {"seconds": [2.5, 2.6], "median": 2.55},
           "at_once": {"seconds": [5.0], "median": 5.0},
           "without_shell_start": {"seconds": [5.1], "median": 5.1},
           "shell_to_healthy": {"seconds": [3.5], "median": 3.5},
           "typing_delays": [2.0]}


def test_each_first_call_is_shown_with_what_it_waited_beyond_a_warm_one() -> None:
    rows = {line.split(" | ")[0].lstrip("| "): line for line in login_table({"login": FIGURES}).splitlines()}
    assert rows["first, typed 2 s after the shell opened"].endswith("| 2.55 | 1.10 |")
    assert rows["first, typed at once (`bash -i -c 'ccq -p ...'`)"].endswith("| 5.00 | 3.55 |")
    assert rows["warm: the proxy already runs"].endswith("| 1.45 |  |")


def test_a_run_without_the_login_section_says_so() -> None:
    assert login_table({"login": None}) == "(not measured in this run)"
