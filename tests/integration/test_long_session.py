"""A long Claude Code session through ccq: it stays inside the model's window and quota.

The real Claude Code, told the model's limits as `ccq` tells them, through the real LiteLLM
with the role's config and callback, reads files worth about three context windows, one
per turn, from a stand-in Cerebras that behaves as the free tier does: a 65,536-token
window (anything longer is refused with Cerebras' own "Please reduce the length of the
messages" 400) and a per-minute token quota that reserves max_tokens up front (429 with
x-ratelimit-* headers). The quota's minute is shortened (QUOTA_WINDOW_SECONDS) so the
session takes a minute or two; the headers still say seconds.

It must finish, every file read, with no context-length 400 (Claude Code compacts before
the window is full, because it knows the window) and at most a handful of 429s (the proxy
waits for the quota to turn instead of sending what it knows will be refused). The counts
are printed. CCQ_LONG_SESSION_BEFORE=1 also runs the session as it was before ccq told
Claude Code the window and paced the quota, for comparison.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
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
OUTPUT = min(ROW["max_output"], CCQ_DEFAULTS["ccq_max_tokens_ceiling"])
# Cerebras' free tier: 150,000 tokens a minute; here a "minute" of 4 s.
QUOTA, QUOTA_WINDOW_SECONDS = 150_000, 4
FILES, LINES_PER_FILE = 44, 150  # ~4,500 tokens a file by the stand-in's count: ~3 windows
MAX_429 = 3


def ccq_environment(window: int, output: int) -> dict[str, str]:
    """What `ccq` exports for the model (roles/ccq/tasks/select_model.yml, same rules)."""
    tool = window // CCQ_VARS["ccq_tool_output_share"]
    return {"CLAUDE_CODE_MAX_CONTEXT_TOKENS": str(window), "CLAUDE_CODE_MAX_OUTPUT_TOKENS": str(output),
            "CLAUDE_CODE_FILE_READ_MAX_OUTPUT_TOKENS": str(tool), "MAX_MCP_OUTPUT_TOKENS": str(tool),
            "BASH_MAX_OUTPUT_LENGTH": str(tool * CCQ_VARS["ccq_chars_per_token"])}


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

    def run(ccq_limits: bool, pacing: bool, claude_code_bin: Path) -> dict[str, Any]:
        files = write_project(tmp_path / "project")
        fake = FakeUpstream(tmp_path / "fake", [
            "--strict", "--models", MODEL, "--context-window", str(WINDOW),
            "--tokens-per-minute", str(QUOTA), "--quota-window-seconds", str(QUOTA_WINDOW_SECONDS),
            "--read-files", ",".join(map(str, files)), "--tool-preference", "none"])
        started.append(fake.start())
        proxy = LiteLLMProxy(litellm_venv, tmp_path / "proxy", fake, callback=callback_path,
                             models=[served_model(MODEL_ALIAS, MODEL, max_output=OUTPUT, window=WINDOW,
                                                  reasoning_effort=ROW.get("reasoning_effort", ""))],
                             extra_env={"CCQ_QUOTA_MAX_WAIT": "60" if pacing else "0"})
        started.append(proxy.start())
        extra = ccq_environment(WINDOW, OUTPUT) if ccq_limits else {}
        extra["CLAUDE_CODE_MAX_RETRIES"] = "10"  # Claude Code's default: it rides out the odd 429
        t0 = time.monotonic()
        proc = run_claude_p(claude_code_bin, tmp_path / "home", tmp_path / "project", proxy.url, proxy.master_key,
                            "ccq-long-session: read every module of this project, one file at a time, "
                            "and tell me when you are done.", timeout=900, extra_env=extra)
        wall = time.monotonic() - t0
        stats = request("GET", fake.url + "/_fake/stats").json()
        seen = "\n".join(json.dumps(r["body"]) for r in fake.records())
        events = stream_json_events(proc.stdout)
        return {"proc": proc, "events": events, "stats": stats, "wall": wall,
                "unread": [f.name for i, f in enumerate(files) if f"ccq-long-session-file-{i:02d}" not in seen],
                "waits": proxy.log_path.read_text(errors="replace").count("ccq: waiting")}

    yield run
    for part in reversed(started):
        part.stop()


def report(label: str, got: dict[str, Any]) -> None:
    s = got["stats"]
    print(f"\n[{label}] wall {got['wall']:.0f} s, requests {s['requests']} {s['by_status']}, "
          f"context-length 400s {s['context_length_exceeded']}, 429s {s['rate_limited']}, "
          f"compactions {s['summaries_asked']}, proxy waits {got['waits']}, reads {s['reads_issued']}/{FILES}, "
          f"largest prompt {s['max_prompt_tokens']} of {WINDOW}, exit {got['proc'].returncode}")


def test_a_long_session_stays_inside_the_window_and_the_quota(session, claude_code_bin: Path) -> None:
    got = session(ccq_limits=True, pacing=True, claude_code_bin=claude_code_bin)
    report("ccq", got)
    proc, stats = got["proc"], got["stats"]
    assert proc.returncode == 0 and got["events"] and got["events"][-1].get("subtype") == "success", (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    assert got["unread"] == [], "Claude Code never saw these files"
    assert stats["summaries_asked"] >= 1, "three windows of files and no compaction: the window was not enforced"
    assert stats["context_length_exceeded"] == 0
    assert stats["rate_limited"] <= MAX_429
    assert stats["max_prompt_tokens"] + OUTPUT <= WINDOW


@pytest.mark.skipif(os.environ.get("CCQ_LONG_SESSION_BEFORE") != "1",
                    reason="the comparison run; CCQ_LONG_SESSION_BEFORE=1 runs it")
def test_the_same_session_without_ccqs_limits_and_pacing(session, claude_code_bin: Path) -> None:
    got = session(ccq_limits=False, pacing=False, claude_code_bin=claude_code_bin)
    report("before", got)
