"""docs/troubleshooting.md's table is doctor's list of checks, so the two cannot drift apart.

After changing a check in roles/ccq_doctor/files/ccq_doctor/checks.py, regenerate the table with
`cd roles/ccq_doctor/files && python3 -m ccq_doctor checks --markdown` and paste it between the
markers in docs/troubleshooting.md.
"""

from __future__ import annotations

import re
from pathlib import Path

from helpers.modules import load_doctor

REPO = Path(__file__).resolve().parents[2]
TROUBLESHOOTING = REPO / "docs/troubleshooting.md"
BEGIN = "<!-- BEGIN doctor checks"
END = "<!-- END doctor checks -->"


def troubleshooting_table() -> str:
    text = TROUBLESHOOTING.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, "docs/troubleshooting.md lost the doctor-checks markers"
    return text.split(BEGIN, 1)[1].split("\n", 1)[1].split(END, 1)[0]


def test_troubleshooting_table_is_exactly_what_doctor_renders():
    assert troubleshooting_table() == load_doctor().checks.markdown_table(), (
        "docs/troubleshooting.md's table differs from doctor's checks: regenerate it with "
        "`cd roles/ccq_doctor/files && python3 -m ccq_doctor checks --markdown`")


def test_every_doctor_check_has_one_troubleshooting_row_in_order():
    rows = re.findall(r"^\| `([a-z-]+)` \|", troubleshooting_table(), re.M)
    assert rows == [check.id for check in load_doctor().checks.CHECKS]
