"""Resuming: a ccq session goes on with its tool history, and a session begun with `cc`
(against Anthropic) goes on under ccq.

The real Claude Code, headless, through the pinned LiteLLM with ccq's callback, in front of
the strict stand-in Cerebras (which refuses what Cerebras' API v2 refuses). A `cc` session's
transcript carries what only Anthropic answers: thinking with its signature, a web search
(server_tool_use and web_search_tool_result) and text with citations; it is written the way
Claude Code writes its own transcript, after the last entry of a real session.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from helpers.claude import run_claude_p, stream_json_events
from helpers.http import request
from helpers.stack import ProxyStack

pytestmark = pytest.mark.integration

SEARCH_TITLE = "What's new in Python 3.14"
SEARCH_URL = "https://docs.python.org/3.14/whatsnew/3.14.html"
CITED = "Python 3.14 adds template strings (PEP 750)."


def queue(stack: ProxyStack, *answers: dict[str, Any]) -> None:
    request("DELETE", stack.fake.url + "/_fake/queue")
    resp = request("POST", stack.fake.url + "/_fake/queue", {"responses": list(answers)},
                   {"content-type": "application/json"})
    assert resp.status == 200, resp.body


def session(stack: ProxyStack, claude: Path, home: Path, project: Path, prompt: str,
            *extra_args: str) -> tuple[str, list[dict[str, Any]]]:
    """Run one headless turn; its session id and the upstream requests it made."""
    mark = stack.fake.mark()
    proc = run_claude_p(claude, home, project, stack.url, stack.token, prompt, extra_args=extra_args)
    events = stream_json_events(proc.stdout)
    result = [e for e in events if e.get("type") == "result"]
    assert proc.returncode == 0 and result and not result[-1].get("is_error"), proc.stdout[-3000:] + proc.stderr[-2000:]
    requests = [r for r in stack.fake.records_since(mark) if r["path"] == "/v1/chat/completions"]
    assert all(r["status"] == 200 for r in requests), [r["status"] for r in requests]
    return result[-1]["session_id"], [r["body"] for r in requests]


def turn_of(requests: list[dict[str, Any]], prompt: str) -> dict[str, Any]:
    """The main agent's request that carried ``prompt`` as its newest message."""
    return next(b for b in requests if prompt in json.dumps(b["messages"][-1], ensure_ascii=False) and b.get("tools"))


def text_answer(prompt: str) -> dict[str, Any]:
    return {"kind": "completion", "message": {"role": "assistant", "content": "ccq-resume: ok"},
            "match": prompt, "tools": True}


def transcript(home: Path, session_id: str) -> Path:
    [path] = (home / ".claude/projects").glob(f"*/{session_id}.jsonl")
    return path


def append_cc_turn(path: Path) -> None:
    """A user prompt and the answer Anthropic gave `cc`: signed thinking, a web search, cited text."""
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    # The conversation is a chain of parentUuid links; its newest link may be an attachment.
    leaf = [e for e in entries if e.get("uuid")][-1]
    last = [e for e in entries if e.get("uuid") and e.get("type") in ("user", "assistant")][-1]
    common = {k: last[k] for k in ("sessionId", "cwd", "version", "userType", "isSidechain") if k in last}
    user_id, assistant_id = str(uuid.uuid4()), str(uuid.uuid4())
    tool_id = "srvtoolu_01" + uuid.uuid4().hex[:22]
    user = {**common, "parentUuid": leaf["uuid"], "type": "user", "uuid": user_id,
            "timestamp": "2026-12-07T10:00:00.000Z",
            "message": {"role": "user", "content": "What is new in Python 3.14? Search the web."}}
    assistant = {**common, "parentUuid": user_id, "type": "assistant", "uuid": assistant_id,
                 "timestamp": "2026-12-07T10:00:05.000Z", "requestId": "req_011CcRESUME",
                 "message": {"id": "msg_01RESUME", "type": "message", "role": "assistant",
                             "model": "claude-sonnet-4-6", "stop_reason": "end_turn", "stop_sequence": None,
                             "usage": {"input_tokens": 10, "output_tokens": 20},
                             "content": [
                                 {"type": "thinking", "thinking": "The user wants Python 3.14 news; search.",
                                  "signature": "EqoBCkgIARABGAIiQO" + "A" * 120},
                                 {"type": "redacted_thinking", "data": "EmwKAhgBEgy" + "B" * 60},
                                 {"type": "server_tool_use", "id": tool_id, "name": "web_search",
                                  "input": {"query": "Python 3.14 what's new"}},
                                 {"type": "web_search_tool_result", "tool_use_id": tool_id, "content": [
                                     {"type": "web_search_result", "title": SEARCH_TITLE, "url": SEARCH_URL,
                                      "encrypted_content": "EqgfCioIARgBIiQ" + "C" * 80, "page_age": "2 weeks ago"}]},
                                 {"type": "text", "text": CITED, "citations": [
                                     {"type": "web_search_result_location", "url": SEARCH_URL, "title": SEARCH_TITLE,
                                      "encrypted_index": "Eo8BCioIAhgB" + "D" * 40,
                                      "cited_text": "template string literals"}]},
                             ]}}
    with path.open("a", encoding="utf-8") as fh:
        for entry in (user, assistant):
            fh.write(json.dumps(entry) + "\n")


def test_a_ccq_session_resumed_keeps_its_tool_history(proxy_stack: ProxyStack, claude_code_bin: Path,
                                                      tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir(parents=True)
    (project / "notes.txt").write_text("ccq-resume-notes: the answer is 42\n")
    read_notes = {"name": "Read", "arguments": json.dumps({"file_path": str(project / "notes.txt")})}
    queue(proxy_stack, {"kind": "tool_calls", "match": "Read notes.txt", "tools": True, "calls": [read_notes]},
          text_answer("What did the notes say?"), text_answer("And then?"))
    first, _ = session(proxy_stack, claude_code_bin, home, project, "Read notes.txt please")
    _, requests = session(proxy_stack, claude_code_bin, home, project, "What did the notes say?",
                          "--resume", first)
    sent = turn_of(requests, "What did the notes say?")
    calls = [c for m in sent["messages"] if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    results = [m for m in sent["messages"] if m["role"] == "tool"]
    assert [c["function"]["name"] for c in calls] == ["Read"], sent["messages"]
    # The tool's result (the file's text) went back upstream with the call it answers.
    assert [r["tool_call_id"] for r in results] == [calls[0]["id"]]
    assert "ccq-resume-notes: the answer is 42" in json.dumps(results[0]["content"])
    _, requests = session(proxy_stack, claude_code_bin, home, project, "And then?", "--continue")
    assert "ccq-resume-notes" in json.dumps(turn_of(requests, "And then?")["messages"])


def test_a_cc_session_with_thinking_and_web_search_resumes_under_ccq(proxy_stack: ProxyStack, claude_code_bin: Path,
                                                                     tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir(parents=True)
    queue(proxy_stack, text_answer("Say hello"), text_answer("Summarize what you found"))
    first, _ = session(proxy_stack, claude_code_bin, home, project, "Say hello")
    append_cc_turn(transcript(home, first))
    _, requests = session(proxy_stack, claude_code_bin, home, project, "Summarize what you found", "--resume", first)
    sent = json.dumps(turn_of(requests, "Summarize what you found")["messages"], ensure_ascii=False)
    # What a person could read of the search stays (title, URL, the cited text); what only
    # Anthropic can read (signatures, encrypted content) does not reach Cerebras.
    for kept in (SEARCH_TITLE, SEARCH_URL, CITED):
        assert kept in sent, kept
    for dropped in ("EqoBCkgIARABGAIiQO", "EqgfCioIARgBIiQ", "Eo8BCioIAhgB", "EmwKAhgBEgy"):
        assert dropped not in sent, dropped
