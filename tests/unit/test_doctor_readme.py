"""The README's troubleshooting table is doctor's list of checks, so the two cannot drift apart.

After changing a check in roles/ccq_doctor/files/ccq_doctor.py, regenerate the table with
`python3 roles/ccq_doctor/files/ccq_doctor.py checks --markdown` and paste it between the
markers in README.md's "## Troubleshooting" section.
"""

from __future__ import annotations

import re
from pathlib import Path

from helpers.modules import load_doctor

REPO = Path(__file__).resolve().parents[2]
BEGIN = "<!-- BEGIN doctor checks"
END = "<!-- END doctor checks -->"


def troubleshooting_table() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Troubleshooting\n", 1)[1].split("\n## ", 1)[0]
    assert BEGIN in section and END in section, "README's Troubleshooting section lost the doctor-checks markers"
    return section.split(BEGIN, 1)[1].split("\n", 1)[1].split(END, 1)[0]


def test_readme_table_is_exactly_what_doctor_renders():
    assert troubleshooting_table() == load_doctor().markdown_table(), (
        "README.md's troubleshooting table differs from doctor's checks: regenerate it with "
        "`python3 roles/ccq_doctor/files/ccq_doctor.py checks --markdown`")


def test_every_doctor_check_has_one_readme_row_in_order():
    rows = re.findall(r"^\| `([a-z-]+)` \|", troubleshooting_table(), re.M)
    assert rows == [check.id for check in load_doctor().CHECKS]
