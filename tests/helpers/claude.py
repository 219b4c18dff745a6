"""Run the pinned Claude Code headless (-p) against a local proxy."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from .stack import MODEL_ALIAS, base_env


def claude_env(home: Path, base_url: str, token: str, alias: str = MODEL_ALIAS) -> dict[str, str]:
    """The environment ccq gives Claude Code, plus what -p needs offline.

    * ANTHROPIC_BASE_URL / ANTHROPIC_AUTH_TOKEN: the proxy and its master key
      (ANTHROPIC_API_KEY stays unset, as ccq leaves it).
    * Every model-routing variable names the alias: without them background
      and subagent calls ask for claude-haiku-* / claude-sonnet-*.
    * CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC, DISABLE_TELEMETRY,
      DISABLE_ERROR_REPORTING, DISABLE_AUTOUPDATER: nothing leaves loopback.
    * IS_SANDBOX=1: lets --dangerously-skip-permissions run as root (CI).
    * CLAUDE_CODE_MAX_RETRIES: fail in seconds, not after minutes of retries.
    """
    env = base_env()
    env.update({
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_AUTH_TOKEN": token,
        "ANTHROPIC_SMALL_FAST_MODEL": alias,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": alias,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": alias,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": alias,
        "CLAUDE_CODE_SUBAGENT_MODEL": alias,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "IS_SANDBOX": "1",
        "CLAUDE_CODE_MAX_RETRIES": "1",
    })
    return env


def run_claude_p(claude: Path, home: Path, cwd: Path, base_url: str, token: str, prompt: str,
                 timeout: float = 180.0, alias: str = MODEL_ALIAS,
                 extra_env: dict[str, str] | None = None,
                 extra_args: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`claude -p PROMPT --model ALIAS --output-format stream-json --verbose [EXTRA_ARGS]`;
    ``extra_env`` on top of claude_env (what ccq tells Claude Code about the model, for instance)."""
    home.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    cmd = [str(claude), "-p", prompt, "--model", alias, "--output-format", "stream-json",
           "--verbose", "--dangerously-skip-permissions", *extra_args]
    env = claude_env(home, base_url, token, alias)
    env.update(extra_env or {})
    return subprocess.run(cmd, env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


def stream_json_events(stdout: str) -> list[dict[str, Any]]:
    """The JSON lines Claude Code printed with --output-format stream-json."""
    events = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events
