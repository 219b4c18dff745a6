#!/usr/bin/env bash
# `make smoke`: the blog recipe's two smoke checks against the real Cerebras API, through the
# pinned LiteLLM with ccq's callback and the pinned Claude Code (both cached under .cache/):
#   1. POST /v1/messages with `system` as an array -> 200 and Anthropic-shaped JSON;
#   2. a Claude Code Agent (subagent) round trip: tool_use Agent/Task, its tool_result, exit 0.
# Needs CEREBRAS_API_KEY in the environment; without it, one line and exit 0. Never part of
# `make test`: it spends real tokens and needs the internet.
#
# The key reaches LiteLLM through its environment and the model list through a curl config
# read from stdin: never a command line. CCQ_SMOKE_API_BASE points it elsewhere (a dry run
# against tests/fake_cerebras); CCQ_SMOKE_MODEL pins the model instead of choosing one.
set -euo pipefail

if [ -z "${CEREBRAS_API_KEY:-}" ]; then
  echo "smoke: skipped: set CEREBRAS_API_KEY to run the blog recipe's smoke checks against the real Cerebras API."
  exit 0
fi

cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
export CCQ_SMOKE_API_BASE=${CCQ_SMOKE_API_BASE:-https://api.cerebras.ai/v1}

exec "$PYTHON" - <<'PY'
"""The smoke checks (run by tests/smoke/smoke.sh)."""
import json
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, "tests")
import yaml  # noqa: E402
from helpers import installs  # noqa: E402
from helpers.claude import run_claude_p, stream_json_events  # noqa: E402
from helpers.http import ANTHROPIC_HEADERS, request  # noqa: E402
from helpers.stack import ROLE_CALLBACK, LiteLLMProxy  # noqa: E402

API_BASE = os.environ["CCQ_SMOKE_API_BASE"].rstrip("/")
KEY = os.environ["CEREBRAS_API_KEY"]
ALIAS = "ccq-smoke"


def say(line: str) -> None:
    print(f"smoke: {line}", flush=True)


def served_models() -> list[str]:
    req = urllib.request.Request(f"{API_BASE}/models", headers={"Authorization": f"Bearer {KEY}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - the configured API base
            return [m["id"] for m in json.load(resp).get("data", [])]
    except urllib.error.HTTPError as exc:
        sys.exit(f"smoke: FAIL: GET {API_BASE}/models answered HTTP {exc.code} (is the key valid?)")
    except urllib.error.URLError as exc:
        sys.exit(f"smoke: FAIL: cannot reach {API_BASE}: {exc.reason}")


def choose_model(served: list[str]) -> str:
    """CCQ_SMOKE_MODEL, else the first of ccq_cerebras_model_preference that is served."""
    if os.environ.get("CCQ_SMOKE_MODEL"):
        return os.environ["CCQ_SMOKE_MODEL"]
    defaults = yaml.safe_load(Path("roles/ccq/defaults/main.yml").read_text())
    preference = defaults.get("ccq_cerebras_model_preference") or [defaults.get("ccq_cerebras_model")]
    for model in preference:
        if model in served:
            return model
    sys.exit(f"smoke: FAIL: none of {preference} is served; {API_BASE} serves {', '.join(served)}")


def main() -> int:
    model = choose_model(served_models())
    say(f"model {model} at {API_BASE}")
    pins = installs.read_pins()
    venv = installs.ensure_litellm_venv(pins)
    claude = installs.ensure_claude_code(pins)
    work = Path(tempfile.mkdtemp(prefix="ccq-smoke-"))
    upstream = SimpleNamespace(api_base=API_BASE, api_key=KEY)
    proxy = LiteLLMProxy(venv, work / "litellm", upstream, callback=ROLE_CALLBACK, extra_models=[
        {"model_name": ALIAS, "litellm_params": {"model": f"cerebras/{model}", "api_base": API_BASE,
                                                 "api_key": "os.environ/CEREBRAS_API_KEY"}}]).start()
    failures = 0
    try:
        # 1. The blog recipe's curl check: a system array must come back as Anthropic JSON.
        reply = request("POST", proxy.url + "/v1/messages", {
            "model": ALIAS, "max_tokens": 16,
            "system": [{"type": "text", "text": "You are a helpful assistant."}],
            "messages": [{"role": "user", "content": "ping"}],
        }, headers={**ANTHROPIC_HEADERS, "authorization": f"Bearer {proxy.master_key}"}, timeout=120)
        body = reply.json() if reply.status == 200 else {}
        if reply.status == 200 and body.get("type") == "message" and body.get("content"):
            say("ok    /v1/messages with a system array -> 200, Anthropic message")
        else:
            failures += 1
            say(f"FAIL  /v1/messages with a system array -> {reply.status}: {reply.body[:300]!r}")

        # 2. The blog recipe's subagent check: Claude Code calls Agent/Task and gets its result back.
        prompt = ("Use the Agent tool (Task) to start a general-purpose subagent whose only job is to reply "
                  "with the single word pong. Then tell me what the subagent answered.")
        proc = run_claude_p(claude, work / "home", work / "project", proxy.url, proxy.master_key, prompt,
                            timeout=300, alias=ALIAS)
        events = stream_json_events(proc.stdout)
        tool_uses = [b for e in events if e.get("type") == "assistant"
                     for b in e["message"]["content"] if b.get("type") == "tool_use"]
        results = [b for e in events if e.get("type") == "user" and isinstance(e["message"]["content"], list)
                   for b in e["message"]["content"] if b.get("type") == "tool_result"]
        final = events[-1] if events else {}
        if proc.returncode == 0 and any(b["name"] in ("Agent", "Task") for b in tool_uses) and results \
                and final.get("type") == "result" and not final.get("is_error"):
            say(f"ok    Claude Code Agent round trip ({len(tool_uses)} tool calls, exit 0)")
        else:
            failures += 1
            say(f"FAIL  Claude Code Agent round trip: exit {proc.returncode}, tools "
                f"{[b['name'] for b in tool_uses]}, {len(results)} results; last: {json.dumps(final)[:300]}")
    finally:
        proxy.stop()
    if failures:
        say(f"{failures} failed; the proxy log is {proxy.log_path}")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


sys.exit(main())
PY
