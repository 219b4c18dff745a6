"""Cerebras' rate limits as the proxy last heard them, and the wait that keeps a request inside them.

Part of the ccq_proxy package: litellm_patches.py imports this module and
hooks a QuotaBook into the httpx client that LiteLLM's openai SDK sends every upstream request
through (item r), so both relay paths (the fast path and LiteLLM's own) are paced alike.
Plain Python: no LiteLLM import, unit-tested on its own.

WHY: Cerebras reserves a request's prompt *plus its max_tokens* against the per-minute
token quota when the request arrives, and refuses one that does not fit with a 429. Every
answer says where the quota stands: ``x-ratelimit-{limit,remaining,reset}-tokens-minute``
(reset in seconds) and the same trio for ``-requests-day``. A request sent when the
last answer said it cannot fit is a 429 the proxy could have predicted; Claude Code then
waits Retry-After and resends it whole (and its parallel subagents do the same at once).

WHAT: ``record()`` keeps the figures of each answer per upstream model (Cerebras keeps a
quota per model). ``wait_before()`` estimates a request's cost (its body's bytes / 4,
the ratio Cerebras' tokenizers give for code and JSON, plus its max_tokens) and, when
that exceeds what is left and the window has not turned yet, returns how long to wait
for the reset; what a request is expected to use is taken off at once, so parallel
requests do not all go for the same remainder. The wait is bounded (``max_wait``; 0
turns pacing off): a longer one (the day's requests spent) is not waited for, the
request goes and Cerebras' own 429 reaches Claude Code. The figures are also written
to a small JSON file that ``ccq status`` shows, with what each kind of request
(``request_purpose``: the work itself, or auto mode's safety checks) has cost since the
proxy started: its share of the same quota.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

LOG = logging.getLogger("ccq.quota")

# Bytes of a request body per token, for the estimate (see the module docstring).
BYTES_PER_TOKEN = 4
HEADER_PREFIX = "x-ratelimit-"
# Seconds added to a wait: Cerebras rounds the reset to hundredths and the request needs
# time to arrive, so a request sent on the dot can still land in the old window.
RESET_MARGIN = 0.5


@dataclass
class Quota:
    """One model's figures from its last answer; times are wall-clock seconds since the epoch."""

    tokens_limit: int | None = None
    tokens_remaining: int | None = None
    tokens_reset_at: float | None = None
    requests_day_limit: int | None = None
    requests_day_remaining: int | None = None
    requests_day_reset_at: float | None = None
    seen_at: float | None = None


def _number(headers: Mapping[str, Any], name: str) -> float | None:
    raw = headers.get(HEADER_PREFIX + name)
    try:
        value = float(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None
    return value if value is not None and math.isfinite(value) and value >= 0 else None


# Claude Code's auto-mode classifier (CLAUDE_CODE_AUTO_MODE_SERVER=0) casts the model as a
# "security monitor" in its system prompt; its first stage also stops at "</block>".
AUTO_MODE_CHECK = "auto-mode checks"
WORK = "work"
AUTO_MODE_SYSTEM_TEXT = "You are a security monitor"
AUTO_MODE_STOP = "</block>"


def request_purpose(body: Mapping[str, Any]) -> str:
    """AUTO_MODE_CHECK for an upstream request of Claude Code's auto-mode classifier, else WORK."""
    stop = body.get("stop")
    if AUTO_MODE_STOP in (stop if isinstance(stop, list) else [stop]):
        return AUTO_MODE_CHECK
    messages = body.get("messages")
    first = messages[0] if isinstance(messages, list) and messages else None
    if isinstance(first, dict) and first.get("role") == "system":
        content = first.get("content")
        text = content if isinstance(content, str) else json.dumps(content)
        if AUTO_MODE_SYSTEM_TEXT in text[:200]:
            return AUTO_MODE_CHECK
    return WORK


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def request_cost(body: Mapping[str, Any], body_bytes: int) -> int:
    """Tokens Cerebras reserves for a request: its prompt (estimated) and its max tokens."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or 0
    return body_bytes // BYTES_PER_TOKEN + (limit if isinstance(limit, int) else 0)


class QuotaBook:
    """The last known quota of each upstream model, and the waits it implies."""

    def __init__(self, max_wait: float, state_file: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_wait = max_wait
        self.state_file = state_file
        self.clock = clock
        self.quotas: dict[str, Quota] = {}
        # Per request_purpose since the proxy started: requests, and the tokens they reserved.
        self.purposes: dict[str, dict[str, int]] = {}
        # Other counts since the start that `ccq status` shows (the wire writer's repairs).
        self.counters: Mapping[str, int] = {}

    def count(self, purpose: str, cost: int) -> None:
        """Count one upstream request of ``purpose`` that reserves ``cost`` tokens."""
        spent = self.purposes.setdefault(purpose, {"requests": 0, "tokens": 0})
        spent["requests"] += 1
        spent["tokens"] += cost  # written with the answer's figures (record), not twice a request

    def record(self, model: str, headers: Mapping[str, Any]) -> None:
        """Keep the rate-limit figures of one upstream answer (any status)."""
        lowered = {str(k).lower(): v for k, v in headers.items() if str(k).lower().startswith(HEADER_PREFIX)}
        if not lowered:
            if self.purposes:  # an upstream without the headers: the counts still reach `ccq status`
                self._write()
            return
        now = self.clock()
        q = self.quotas.setdefault(model, Quota())
        # Cerebras' two windows, each a limit, what is left and seconds to its reset.
        for window, field in (("tokens-minute", "tokens"), ("requests-day", "requests_day")):
            remaining = _number(lowered, "remaining-" + window)
            if remaining is None:
                continue
            reset = _number(lowered, "reset-" + window)
            limit = _int(_number(lowered, "limit-" + window)) or getattr(q, field + "_limit")
            setattr(q, field + "_limit", limit)
            setattr(q, field + "_remaining", int(remaining))
            setattr(q, field + "_reset_at", now + reset if reset is not None else None)
        q.seen_at = now
        self._write()

    def wait_before(self, model: str, cost: int) -> float:
        """Seconds to wait before sending a request of ``cost`` tokens to ``model`` (0: go now).

        Takes the cost off the remainder when the request goes, so the next request
        sees it spent until the answer's own figures replace the estimate.
        """
        q = self.quotas.get(model)
        if q is None or q.tokens_remaining is None or self.max_wait <= 0:
            return 0.0
        now = self.clock()
        if q.tokens_reset_at is not None and now >= q.tokens_reset_at + RESET_MARGIN:
            # The window turned since the last answer: the whole limit is there again.
            q.tokens_remaining, q.tokens_reset_at = q.tokens_limit, None
            if q.tokens_remaining is None:
                return 0.0
        if cost <= q.tokens_remaining or q.tokens_reset_at is None:
            q.tokens_remaining = max(0, q.tokens_remaining - cost)
            return 0.0
        if q.tokens_limit is not None and cost > q.tokens_limit:
            return 0.0  # never fits: waiting would not help, Cerebras says so itself
        wait = q.tokens_reset_at + RESET_MARGIN - now
        if wait > self.max_wait:
            return 0.0
        return wait

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {model: asdict(q) for model, q in self.quotas.items()}

    def _write(self) -> None:
        """Replace the state file atomically (readers never see half a file); best effort."""
        if not self.state_file:
            return
        directory = os.path.dirname(self.state_file) or "."
        try:
            fd, tmp = tempfile.mkstemp(prefix=".quota-", dir=directory)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"models": self.snapshot(), "purposes": self.purposes,
                           "counters": dict(self.counters)}, fh)
            os.replace(tmp, self.state_file)
        except OSError as exc:
            LOG.debug("ccq: quota state not written: %s", exc)


def quota_book_from_env(environ: Mapping[str, str] = os.environ) -> QuotaBook:
    """CCQ_QUOTA_MAX_WAIT (seconds, default 60; 0 turns pacing off) and CCQ_QUOTA_STATE (a file)."""
    raw = environ.get("CCQ_QUOTA_MAX_WAIT", "60").strip()
    try:
        max_wait = float(raw)
    except ValueError:
        raise ValueError(f"CCQ_QUOTA_MAX_WAIT must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(max_wait) or max_wait < 0:
        raise ValueError(f"CCQ_QUOTA_MAX_WAIT must be 0 or more seconds, got {raw!r}")
    return QuotaBook(max_wait, environ.get("CCQ_QUOTA_STATE") or None)
