"""A long Claude Code session through ccq: it stays inside the model's window and quota.

The real Claude Code, told the model's limits as `ccq` tells them, through the real LiteLLM
with the role's config and callback, reads files worth about three context windows, one
per turn (or two), from a stand-in Cerebras that behaves as the free tier does: a 65,536-token
window (anything longer is refused with Cerebras' own "Please reduce the length of the
messages" 400) and a per-minute token quota that reserves max_tokens up front (429 with
x-ratelimit-* headers). The quota's minute is shortened (QUOTA_WINDOW_SECONDS) so the
session takes a minute or two; the headers still say seconds.

It runs on the free tier's quota (60,000 tokens and 30 requests a minute), once with one Read
per answer and once with two at once (as gpt-oss calls tools in parallel), each told what ccq's
budget tells Claude Code (docs/budget.md). Each must finish, every file read, with no
context-length 400 (Claude Code compacts before the window is full, because it knows the
window), no "Autocompact is thrashing" stop and at most a handful of 429s (the proxy waits for
the quota to turn instead of sending what it knows will be refused). The counts are printed.
CCQ_LONG_SESSION_BEFORE=1 also runs both as ccq told Claude Code before the budget, for comparison.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers.claude import run_claude_p, stream_json_events
from helpers.http import request
from helpers.stack import MODEL_ALIAS, REPO_ROOT, FakeUpstream, LiteLLMProxy, served_model

pytestmark = pytest.mark.integration

CCQ_DEFAULTS = yaml.safe_load((REPO_ROOT / "roles/ccq/defaults/main.yml").read_text())
CCQ_VARS = yaml.safe_load((REPO_ROOT / "roles/ccq/vars/main.yml").read_text())
MODEL = CCQ_DEFAULTS["ccq_cerebras_model_preference"][0]
ROW = CCQ_DEFAULTS["ccq_cerebras_models"][MODEL]
WINDOW = ROW["window"]["free"]
# Cerebras' free tier: 60,000 tokens and 30 requests a minute. Here a "minute" is 1 s (the
# proxy then waits at most 1.5 s a request): one request of 40,000-50,000 tokens fills it, as
# it fills Cerebras' real minute, and the session takes a minute or two, not an hour.
QUOTA, REQUESTS_PER_MINUTE, QUOTA_WINDOW_SECONDS = ROW["tokens_per_minute"]["free"], 30, 1
# ~2,600 tokens a file by the stand-in's count, under the free tier's file-read cap with Claude
# Code's line numbers: ~3 windows in all.
FILES, LINES_PER_FILE = 72, 120
MAX_429 = 3


def ccq_budget(window: int, tokens_per_minute: int = 0) -> dict[str, int]:
    """The output and tool caps select_model.yml computes (same rules; docs/budget.md)."""
    b, v = CCQ_VARS["ccq_budget"], CCQ_VARS
    output = min(ROW["max_output"], CCQ_DEFAULTS["ccq_max_tokens_ceiling"], window // v["ccq_output_share"])
    threshold = window - min(output, b["output_reserve_max"]) - b["compact_reserve"]
    limit = min([window] + ([tokens_per_minute] if tokens_per_minute else []))
    tool = max(1024, min(window // v["ccq_tool_output_share"],
                         (threshold - b["base_prompt"]) // (b["restored_files"] + b["parallel_reads"]),
                         (limit - threshold - output - b["margin"]) // b["parallel_reads"]))
    return {"output": output, "tool": tool, "threshold": threshold}


def ccq_environment(window: int, output: int, tool: int) -> dict[str, str]:
    """What `ccq` exports for the model (roles/ccq/tasks/select_model.yml)."""
    return {"CLAUDE_CODE_MAX_CONTEXT_TOKENS": str(window), "CLAUDE_CODE_MAX_OUTPUT_TOKENS": str(output),
            "CLAUDE_CODE_FILE_READ_MAX_OUTPUT_TOKENS": str(tool), "MAX_MCP_OUTPUT_TOKENS": str(tool),
            "BASH_MAX_OUTPUT_LENGTH": str(tool * CCQ_VARS["ccq_chars_per_token"])}


BUDGET = ccq_budget(WINDOW, QUOTA)
# What ccq told Claude Code before the budget (issue 22): the ceiling as output cap, window/8
# for tool outputs, every tool but WebSearch. CCQ_LONG_SESSION_BEFORE=1 runs it for comparison.
BEFORE = {"env": ccq_environment(WINDOW, 16384, WINDOW // 8), "disallowed": ["WebSearch"], "output": 16384}
NOW = {"env": ccq_environment(WINDOW, BUDGET["output"], BUDGET["tool"]),
       "disallowed": CCQ_DEFAULTS["ccq_disallowed_tools"], "output": BUDGET["output"]}


def write_project(project: Path) -> list[Path]:
    project.mkdir(parents=True)
    files = []
    for i in range(FILES):
        path = project / f"module_{i:02d}.py"
        body = "".join(f"value_{i:02d}_{n:03d} = compute({n}, 'ccq long session line padding text here')  # note\n"
                       for n in range(LINES_PER_FILE))
        path.write_text(body + f"CCQ_FILE_MARKER = 'ccq-long-session-file-{i:02d}'\n")
        files.append(path)
    return files


@pytest.fixture
def session(tmp_path: Path, litellm_venv: Path, callback_path: Path) -> Iterator[Any]:
    """Start the stand-in and the proxy for one run; yield a runner."""
    started: list[Any] = []

    def run(told: dict[str, Any] | None, pacing: bool, claude_code_bin: Path,
            reads_per_answer: int = 1) -> dict[str, Any]:
        files = write_project(tmp_path / "project")
        output = told["output"] if told else 16384
        fake = FakeUpstream(tmp_path / "fake", [
            "--strict", "--models", MODEL, "--context-window", str(WINDOW),
            "--tokens-per-minute", str(QUOTA), "--quota-window-seconds", str(QUOTA_WINDOW_SECONDS),
            "--requests-per-minute", str(REQUESTS_PER_MINUTE),
            "--read-files", ",".join(map(str, files)), "--reads-per-answer", str(reads_per_answer),
            "--tool-preference", "none"])
        started.append(fake.start())
        proxy = LiteLLMProxy(litellm_venv, tmp_path / "proxy", fake, callback=callback_path,
                             models=[served_model(MODEL_ALIAS, MODEL, max_output=output, window=WINDOW,
                                                  reasoning_effort=ROW.get("reasoning_effort", ""))],
                             extra_env={"CCQ_QUOTA_MAX_WAIT": "60" if pacing else "0"})
        started.append(proxy.start())
        extra = dict(told["env"]) if told else {}
        extra["CLAUDE_CODE_MAX_RETRIES"] = "10"  # Claude Code's default: it rides out the odd 429
        args = tuple(f"--disallowedTools={t}" for t in (told["disallowed"] if told else []))
        t0 = time.monotonic()
        proc = run_claude_p(claude_code_bin, tmp_path / "home", tmp_path / "project", proxy.url, proxy.master_key,
                            "ccq-long-session: read every module of this project, one file at a time, "
                            "and tell me when you are done.", timeout=900, extra_env=extra, extra_args=args)
        wall = time.monotonic() - t0
        stats = request("GET", fake.url + "/_fake/stats").json()
        records = fake.records()
        seen = "\n".join(json.dumps(r["body"]) for r in records)
        events = stream_json_events(proc.stdout)
        return {"proc": proc, "events": events, "stats": stats, "wall": wall, "records": records,
                "thrash": "Autocompact is thrashing" in proc.stdout + proc.stderr,
                "unread": [f.name for i, f in enumerate(files) if f"ccq-long-session-file-{i:02d}" not in seen],
                "waits": proxy.log_path.read_text(errors="replace").count("ccq: waiting")}

    yield run
    for part in reversed(started):
        part.stop()


def report(label: str, got: dict[str, Any]) -> None:
    s = got["stats"]
    print(f"\n[{label}] wall {got['wall']:.0f} s, requests {s['requests']} {s['by_status']}, "
          f"context-length 400s {s['context_length_exceeded']}, 429s {s['rate_limited']}, "
          f"compactions {s['summaries_asked']} ({s['summaries_asked'] / max(1, s['reads_issued']):.2f} per read), "
          f"thrash stop {'yes' if got['thrash'] else 'no'}, proxy waits {got['waits']}, "
          f"reads {s['reads_issued']}/{FILES}, largest prompt {s['max_prompt_tokens']} of {WINDOW}, "
          f"exit {got['proc'].returncode}")


# The last message of Claude Code's compaction request (the stand-in answers it with a summary).
SUMMARY_MARK = "Your task is to create a detailed summary of"


def canonical(value: Any) -> str:
    """The bytes the proxy sent upstream, as the fake logged them (key order kept)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def check_finished(got: dict[str, Any]) -> None:
    proc, stats = got["proc"], got["stats"]
    assert proc.returncode == 0 and got["events"] and got["events"][-1].get("subtype") == "success", (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    assert not got["thrash"]
    assert got["unread"] == [], "Claude Code never saw these files"
    assert stats["summaries_asked"] >= 1, "two windows of files and no compaction: the window was not enforced"
    assert stats["context_length_exceeded"] == 0
    assert stats["rate_limited"] <= MAX_429
    assert stats["max_prompt_tokens"] + NOW["output"] <= min(WINDOW, QUOTA)


def test_a_long_session_on_the_free_tier_stays_inside_the_window_and_the_quota(
        session, claude_code_bin: Path) -> None:
    got = session(NOW, pacing=True, claude_code_bin=claude_code_bin)
    report("ccq, one read per answer", got)
    check_finished(got)
    # Every request asks Cerebras for the output cap Claude Code was told, no more (the quota
    # reserves it), and offers none of the lean set's tools.
    bodies = [r["body"] for r in got["records"] if r["status"] == 200]
    assert {b.get("max_completion_tokens") or b.get("max_tokens") for b in bodies} == {NOW["output"]}
    offered = {t["function"]["name"] for b in bodies for t in b.get("tools") or []}
    assert offered and not offered & set(NOW["disallowed"])
    # Within a conversation each request repeats the one before byte for byte and only adds to
    # its end, so Cerebras' prefix cache can serve it (a compaction starts a new prefix).
    pairs = [(a, b) for a, b in pairwise(bodies)
             if SUMMARY_MARK not in json.dumps(a["messages"][-1]) + json.dumps(b["messages"][-1])
             and len(b["messages"]) > len(a["messages"])]
    assert len(pairs) >= FILES // 2
    for a, b in pairs:
        assert canonical(b.get("tools")) == canonical(a.get("tools"))
        assert [canonical(m) for m in b["messages"][:len(a["messages"])]] == [canonical(m) for m in a["messages"]]


def test_a_long_session_with_two_parallel_reads_per_answer_finishes(session, claude_code_bin: Path) -> None:
    got = session(NOW, pacing=True, claude_code_bin=claude_code_bin, reads_per_answer=2)
    report("ccq, two reads per answer", got)
    check_finished(got)


@pytest.mark.skipif(os.environ.get("CCQ_LONG_SESSION_BEFORE") != "1",
                    reason="the comparison runs; CCQ_LONG_SESSION_BEFORE=1 runs them")
@pytest.mark.parametrize("reads_per_answer", [1, 2])
def test_the_same_session_with_what_ccq_told_claude_code_before_the_budget(
        session, claude_code_bin: Path, reads_per_answer: int) -> None:
    got = session(BEFORE, pacing=True, claude_code_bin=claude_code_bin, reads_per_answer=reads_per_answer)
    report(f"before the budget, {reads_per_answer} read(s) per answer", got)
