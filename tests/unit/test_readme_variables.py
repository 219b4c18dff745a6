"""README.md's "Variables" table is generated from roles/ccq/meta/argument_specs.yml (names,
descriptions) and roles/ccq/defaults/main.yml (defaults) by scripts/variables_table.py, so the
argument specs are the one place of the wording. After changing either file, regenerate it:

    python3 scripts/variables_table.py --update
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from helpers.modules import load_file

REPO = Path(__file__).resolve().parents[2]
REGENERATE = "regenerate it with `python3 scripts/variables_table.py --update`"


def generator():
    return load_file(REPO / "scripts/variables_table.py", "variables_table")


def readme_table() -> str:
    gen = generator()
    return gen.split_readme((REPO / "README.md").read_text(encoding="utf-8"))[1]


def test_readme_variables_table_is_exactly_what_the_generator_renders():
    assert readme_table() == generator().markdown_table(), (
        "README.md's Variables table differs from roles/ccq/meta/argument_specs.yml and "
        f"roles/ccq/defaults/main.yml: {REGENERATE}")


def test_every_option_has_one_row_in_argument_specs_order():
    gen = generator()
    rows = re.findall(r"^\| `(ccq_\w+)` \|", readme_table(), re.M)
    expected = [name for name in gen.options() if name not in gen.INTERNAL]
    assert rows == expected, f"README.md's Variables rows are not argument_specs' options in order: {REGENERATE}"


def test_every_default_is_a_documented_option_and_every_option_has_a_description():
    gen = generator()
    specs = gen.options()
    defaults = yaml.safe_load(gen.DEFAULTS.read_text(encoding="utf-8"))
    assert set(defaults) <= set(specs), f"defaults without an argument spec: {sorted(set(defaults) - set(specs))}"
    assert set(gen.INTERNAL) <= set(specs), "INTERNAL names an option argument_specs no longer has"
    undescribed = [name for name, spec in specs.items() if not gen.description(spec).strip()]
    assert not undescribed, f"options without a description in argument_specs.yml: {undescribed}"


def test_default_rendering():
    show = generator().show_default
    assert show("") == '`""`'
    assert show(60) == "`60`"
    assert show(False) == "`false`"
    assert show([]) == "`[]`"
    assert show(["a", "b"]) == "`[a, b]`"
    assert show(["x" * 40, "y" * 40]) == "a list"
    assert show({"m": {}}) == "a table"
    assert show("{{ role_path }}/x") == "computed"
