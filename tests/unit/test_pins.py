"""One source per pin (issue 23): ccq_litellm_version and ccq_openai_version_spec in
roles/ccq/defaults/main.yml are what the play installs; the version guards of the deployed
Python (ccq_proxy/guard.py, which the patches and the stream fast path share) and the committed
lock must say the same, so that moving a pin without the rest fails here, not on a laptop
whose proxy refuses to start. docs/upgrading.md is the procedure."""

from __future__ import annotations

import re

from helpers.modules import load_proxy_module
from scripts.locks import litellm_lock, read_pins, read_requirements_lock

PINS = read_pins()
guard = load_proxy_module("guard")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_the_patches_guard_names_the_litellm_the_play_pins():
    assert guard.PATCHED_LITELLM_VERSION == PINS.litellm_version, (
        f"ccq_proxy/guard.py's PATCHED_LITELLM_VERSION is {guard.PATCHED_LITELLM_VERSION}, "
        f"roles/ccq/defaults/main.yml pins {PINS.litellm_version}: follow docs/upgrading.md")


def test_the_patches_openai_series_is_exactly_the_plays_openai_range():
    low, below = re.fullmatch(r">=([\d.]+),<([\d.]+)", PINS.openai_spec).groups()
    series = guard.PATCHED_OPENAI_SERIES
    major, minor = _version(series.rstrip("."))
    # ">=1.99.1,<1.100.0" is within "1.99.", and ends where the next minor series begins.
    assert low.startswith(series) and _version(below) == (major, minor + 1, 0), (series, PINS.openai_spec)


def test_the_lock_holds_the_pinned_litellm_and_an_openai_of_that_series():
    lock_text = litellm_lock().path.read_text(encoding="utf-8")
    locked = {entry.name: entry.version for entry in read_requirements_lock(lock_text)}
    assert locked["litellm"] == PINS.litellm_version
    assert locked["openai"].startswith(guard.PATCHED_OPENAI_SERIES)


def test_pipx_injects_exactly_what_the_lock_holds_beyond_litellm_and_openai():
    """litellm[proxy] brings openai; what else the lock was resolved for (litellm_lock_inputs,
    `make lock-litellm`) is what roles/litellm_proxy has pipx inject (litellm_proxy_pipx_inject)."""
    import yaml
    from packaging.requirements import Requirement

    from scripts.locks import LITELLM_PROXY_ROLE, litellm_lock_inputs

    role_vars = yaml.safe_load((LITELLM_PROXY_ROLE / "vars/main.yml").read_text(encoding="utf-8"))
    inputs = {Requirement(line).name for line in litellm_lock_inputs(PINS)}
    assert set(role_vars["litellm_proxy_pipx_inject"]) == inputs - {"litellm", "openai"}
