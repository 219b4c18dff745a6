"""ccq's Cerebras model table (roles/ccq/defaults/main.yml) and what select_model.yml derives from it.

The table is the one place that says what each Cerebras model can do; select_model.yml turns
it, the tier and the overrides into what Claude Code is told (ccq_claude_code_environment)
and what the proxy serves (ccq_proxy_models: alias, model, limits, reasoning_effort).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers.playbook import run_select_model, select_model_facts
from helpers.stack import FakeUpstream

REPO = Path(__file__).resolve().parents[2]
CCQ_DEFAULTS = REPO / "roles/ccq/defaults/main.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
DEFAULTS = yaml.safe_load(CCQ_DEFAULTS.read_text())
TABLE: dict[str, dict[str, Any]] = DEFAULTS["ccq_cerebras_models"]
SERVED = sorted(m for m, row in TABLE.items() if "retired" not in row)
RETIRED = sorted(m for m, row in TABLE.items() if "retired" in row)
CEREBRAS_WINDOWS = {"free": 65536, "paid": 131072}
VARS = yaml.safe_load((REPO / "roles/ccq/vars/main.yml").read_text())
# ccq's default flags: WebSearch (Anthropic's servers) and the lean tool set (docs/interactive.md).
LEAN = [f"--disallowedTools={tool}" for tool in DEFAULTS["ccq_disallowed_tools"]]

needs_ansible = pytest.mark.skipif(not ANSIBLE_PLAYBOOK.exists(), reason="ansible-playbook is not in this venv")


def final_replacement(model: str) -> str:
    seen = set()
    while "retired" in TABLE.get(model, {}):
        assert model not in seen, f"replacement cycle through {model}"
        seen.add(model)
        model = TABLE[model]["replacement"]
    return model


# -- the table's shape (plain YAML) ----------------------------------------------------------

@pytest.mark.parametrize("model", SERVED)
def test_a_served_model_says_its_window_output_images_and_reasoning(model: str) -> None:
    row = TABLE[model]
    assert set(row) <= {"window", "max_output", "tokens_per_minute", "images", "reasoning_effort", "reasoning_efforts"}
    assert set(row.get("tokens_per_minute", {})) <= {"free", "paid"}
    assert set(row["window"]) == {"free", "paid"}
    for tier, window in row["window"].items():
        assert type(window) is int and 0 < window <= CEREBRAS_WINDOWS[tier]
    assert type(row["max_output"]) is int and 0 < row["max_output"] < row["window"]["free"]
    assert type(row["images"]) is bool
    if "reasoning_effort" in row:
        assert row["reasoning_effort"] in row["reasoning_efforts"]
    assert "disable_reasoning" not in json.dumps(row)  # Cerebras replaced it with reasoning_effort


@pytest.mark.parametrize("model", RETIRED)
def test_a_retired_model_names_a_replacement_that_leads_to_a_served_one(model: str) -> None:
    row = TABLE[model]
    assert set(row) == {"retired", "replacement"}
    assert row["replacement"] in TABLE
    assert final_replacement(model) in SERVED


def test_the_preference_list_is_the_tables_served_models_best_first() -> None:
    preference = DEFAULTS["ccq_cerebras_model_preference"]
    assert preference and len(set(preference)) == len(preference)
    assert [m for m in preference if m not in SERVED] == []


# -- what select_model.yml derives ------------------------------------------------------------

def select(tmp_path: Path, api_base: str, key: str, settings: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return run_select_model(tmp_path, {"ccq_cerebras_api_base": api_base, **settings}, key)


facts = select_model_facts


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    return " ".join(result.stdout.split())


@pytest.fixture(scope="module")
def cerebras(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeUpstream]:
    """A stand-in serving today's models and two the table calls retired (a stale account)."""
    fake = FakeUpstream(tmp_path_factory.mktemp("cerebras"),
                        ["--models", ",".join(SERVED + ["zai-glm-4.7", "llama3.1-8b"])]).start()
    yield fake
    fake.stop()


@needs_ansible
@pytest.mark.parametrize("tier", ["free", "paid"])
@pytest.mark.parametrize("model", SERVED)
def test_each_model_and_tier_gets_its_own_limits(tmp_path, cerebras, model, tier):
    row = TABLE[model]
    got = facts(select(tmp_path, cerebras.api_base, cerebras.api_key,
                       {"ccq_cerebras_model": model, "ccq_cerebras_tier": tier}))
    window = row["window"][tier]
    # The budget (docs/budget.md), computed here the long way round.
    budget, quota = VARS["ccq_budget"], row.get("tokens_per_minute", {}).get(tier, 0)
    output = min(row["max_output"], DEFAULTS["ccq_max_tokens_ceiling"], window // VARS["ccq_output_share"])
    threshold = window - min(output, budget["output_reserve_max"]) - budget["compact_reserve"]
    limit = min([window] + [quota] * bool(quota))  # the window, or the quota when one is smaller
    tool = max(1024, min(window // VARS["ccq_tool_output_share"],
                         (threshold - budget["base_prompt"]) // (budget["restored_files"] + budget["parallel_reads"]),
                         (limit - threshold - output - budget["margin"])
                         // budget["parallel_reads"]))
    # After a compaction with its files read back, a turn of two maximal reads fits below the
    # threshold, and the compaction request after it fits the window and the quota.
    assert budget["base_prompt"] + (budget["restored_files"] + budget["parallel_reads"]) * tool <= threshold
    assert threshold + budget["parallel_reads"] * tool + budget["margin"] + output <= limit
    assert got["env"]["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == str(window)
    assert got["env"]["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == str(output)
    assert got["env"]["CLAUDE_CODE_FILE_READ_MAX_OUTPUT_TOKENS"] == str(tool)
    assert got["proxy_models"] == [{
        "alias": DEFAULTS["ccq_model_alias"], "model": model, "role": "main", "window": window,
        "max_output": output, "tokens_per_minute": quota, "images": row["images"],
        "reasoning_effort": row.get("reasoning_effort", ""), "listed": True}]


@needs_ansible
def test_the_default_is_the_first_served_preference(tmp_path, cerebras):
    got = facts(select(tmp_path, cerebras.api_base, cerebras.api_key, {}))
    assert got["selected"] == DEFAULTS["ccq_cerebras_model_preference"][0]


@needs_ansible
def test_overrides_win_but_never_above_the_models_output_limit(tmp_path, cerebras):
    model = SERVED[0]
    got = facts(select(tmp_path, cerebras.api_base, cerebras.api_key, {
        "ccq_cerebras_model": model, "ccq_context_window": 50000, "ccq_max_output_tokens": 10**6,
        "ccq_max_tokens_ceiling": 10**6}))
    assert got["env"]["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "50000"
    assert got["env"]["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == str(TABLE[model]["max_output"])
    assert got["proxy_models"][0]["window"] == 50000


@needs_ansible
def test_a_background_model_gets_its_own_alias_and_limits(tmp_path, cerebras):
    main, background = SERVED[0], SERVED[-1]
    got = facts(select(tmp_path, cerebras.api_base, cerebras.api_key,
                       {"ccq_cerebras_model": main, "ccq_background_model": background}))
    aliases = {m["role"]: (m["alias"], m["model"]) for m in got["proxy_models"]}
    assert aliases == {"main": (DEFAULTS["ccq_model_alias"], main),
                       "background": (DEFAULTS["ccq_model_alias"] + "-background", background)}
    assert got["proxy_models"][1]["reasoning_effort"] == TABLE[background].get("reasoning_effort", "")
    # Auto mode's classifier runs on the background model (its own quota), through the proxy.
    assert got["env"]["CLAUDE_CODE_AUTO_MODE_MODEL"] == DEFAULTS["ccq_model_alias"] + "-background"
    assert got["env"]["CLAUDE_CODE_AUTO_MODE_SERVER"] == "0"


@needs_ansible
def test_without_a_background_model_the_classifier_runs_on_the_main_alias(tmp_path, cerebras):
    got = facts(select(tmp_path, cerebras.api_base, cerebras.api_key, {}))
    assert got["env"]["CLAUDE_CODE_AUTO_MODE_MODEL"] == DEFAULTS["ccq_model_alias"]
    assert got["env"]["CLAUDE_CODE_RESUME_HINT_COMMAND"] == "ccq"


@needs_ansible
@pytest.mark.parametrize(("settings", "arguments"), [
    # Auto mode's check costs about 35,000 prompt tokens: manual on the free tier's 60,000 a minute.
    ({}, ["--permission-mode=manual"] + LEAN),
    ({"ccq_cerebras_tier": "paid"}, ["--permission-mode=auto"] + LEAN),
    ({"ccq_permission_mode": "manual", "ccq_disallowed_tools": ["WebSearch", "NotebookEdit"]},
     ["--permission-mode=manual", "--disallowedTools=WebSearch", "--disallowedTools=NotebookEdit"]),
    ({"ccq_permission_mode": "", "ccq_disallowed_tools": []}, []),
])
def test_the_permission_mode_and_the_tools_left_out_become_flags(tmp_path, cerebras, settings, arguments):
    got = facts(select(tmp_path, cerebras.api_base, cerebras.api_key, settings))
    assert got["arguments"] == arguments


@needs_ansible
def test_a_background_model_that_is_not_served_stops_the_play_naming_the_replacement(tmp_path, make_fake):
    only_main = make_fake("--models", SERVED[0])
    result = select(tmp_path, only_main.api_base, only_main.api_key, {"ccq_background_model": "zai-glm-4.6"})
    assert result.returncode != 0
    text = one_line(result)
    assert "ccq_background_model=zai-glm-4.6 is not served by" in text
    assert (f"(Cerebras retired it in {TABLE['zai-glm-4.6']['retired']}; its replacement is "
            f"{final_replacement('zai-glm-4.6')})") in text


@needs_ansible
def test_a_pinned_retired_model_that_is_gone_names_the_final_replacement(tmp_path, cerebras):
    result = select(tmp_path, cerebras.api_base, cerebras.api_key, {"ccq_cerebras_model": "qwen-3-coder-480b"})
    assert result.returncode != 0
    assert (f"ccq_cerebras_model=qwen-3-coder-480b is not served by {cerebras.api_base} (Cerebras retired it in "
            f"{TABLE['qwen-3-coder-480b']['retired']}; its replacement is "
            f"{final_replacement('qwen-3-coder-480b')})") in one_line(result)


@needs_ansible
def test_a_retired_model_still_served_works_with_safe_limits_and_a_warning(tmp_path, cerebras):
    result = select(tmp_path, cerebras.api_base, cerebras.api_key,
                    {"ccq_cerebras_model": "zai-glm-4.7", "ccq_cerebras_tier": "paid"})
    got = facts(result)
    assert got["env"]["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "65536"
    assert got["proxy_models"][0]["listed"] is False
    assert "zai-glm-4.7 is not in ccq_cerebras_models as a served model" in one_line(result)


@needs_ansible
def test_a_table_entry_with_disable_reasoning_is_refused(tmp_path, cerebras):
    table = dict(TABLE, **{SERVED[0]: dict(TABLE[SERVED[0]], disable_reasoning=True)})
    result = select(tmp_path, cerebras.api_base, cerebras.api_key, {"ccq_cerebras_models": table})
    assert result.returncode != 0
    assert f"ccq_cerebras_models[{SERVED[0]}] must be" in one_line(result)
