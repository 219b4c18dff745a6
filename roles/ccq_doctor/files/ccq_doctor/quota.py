"""What `ccq status` says of Cerebras' rate limits, from the proxy's quota state file."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _ago(seconds: float) -> str:
    """12 -> "12 s ago"; 130 -> "2 min ago"."""
    seconds = int(max(seconds, 0))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _figure(entry: Mapping[str, Any], name: str) -> float | None:
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} is {value!r}")
    return float(value)


def _quota_part(entry: Mapping[str, Any], kind: str, now: float, seen: float | None) -> str:
    """One model's token (per minute) or request (per day) figures, as `ccq status` says them."""
    prefix, unit, period, span = {"tokens": ("tokens", "tokens", "this minute", 60.0),
                                  "requests": ("requests_day", "requests", "today", 86400.0)}[kind]
    limit = _figure(entry, f"{prefix}_limit")
    remaining = _figure(entry, f"{prefix}_remaining")
    reset_at = _figure(entry, f"{prefix}_reset_at")
    if remaining is None:
        return ""
    if reset_at is None and seen is not None:
        reset_at = seen + span  # a per-minute (per-day) figure is stale after its minute (day)
    if reset_at is not None and now >= reset_at:
        window = "the minute's" if kind == "tokens" else "the day's"
        size = f" of {int(limit):,} {unit}" if limit is not None else ""
        return f"{window} quota{size} is full again"
    of = f" of {int(limit):,}" if limit is not None else ""
    return f"{int(remaining):,}{of} {unit} left {period}"


def quota_lines(path: Path, first: Sequence[str] = (), now: float | None = None) -> list[str]:
    """What the proxy last heard of Cerebras' rate limits (its quota state file), one line per
    model, the models in ``first`` (those ccq uses) leading. Never raises."""
    now = time.time() if now is None else now
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ["no answer from Cerebras recorded yet"]
    except (OSError, UnicodeDecodeError) as exc:
        return [f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"]
    try:
        data = json.loads(raw)
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, dict) or not all(isinstance(e, dict) for e in models.values()):
            raise ValueError("no models table")
        if not models:
            return ["no answer from Cerebras recorded yet"]
        order = [m for m in first if m in models] + sorted(m for m in models if m not in first)
        lines = []
        for model in order:
            entry = models[model]
            seen = _figure(entry, "seen_at")
            parts = [p for p in (_quota_part(entry, "tokens", now, seen), _quota_part(entry, "requests", now, seen))
                     if p]
            if not parts:
                parts = ["no rate-limit figures in its last answer"]
            if seen is not None:
                parts[0] += f" ({_ago(now - seen)})"
            lines.append(f"{model}: " + ", ".join(parts))
        return lines
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        return [f"{path} is garbled ({exc}); the proxy rewrites it after its next answer from Cerebras"]


def share_lines(path: Path) -> list[str]:
    """What each kind of upstream request (the work, auto mode's checks) has cost since the proxy
    started, from its quota state file: the requests and the tokens they reserved against
    Cerebras' quota. [] when nothing is recorded; never raises."""
    try:
        purposes = json.loads(path.read_text(encoding="utf-8")).get("purposes")
        if not isinstance(purposes, dict) or not purposes:
            return []
        total_requests = sum(int(p["requests"]) for p in purposes.values())
        total_tokens = sum(int(p["tokens"]) for p in purposes.values())
        lines = []
        for name in sorted(purposes, key=lambda n: (n != "work", n)):
            requests, tokens = int(purposes[name]["requests"]), int(purposes[name]["tokens"])
            percent = f" ({100 * tokens // total_tokens}%)" if total_tokens else ""
            lines.append(f"{name}: {requests:,} of {total_requests:,} requests, {tokens:,} of {total_tokens:,} "
                         f"tokens reserved{percent} since the proxy started")
        return lines
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return []


def repair_lines(path: Path) -> list[str]:
    """Tool calls whose arguments the proxy repaired or refused since it started (its quota state
    file's counters, from the wire writer); [] when there were none; never raises."""
    try:
        counters = json.loads(path.read_text(encoding="utf-8")).get("counters") or {}
        repaired = int(counters.get("tool_arguments_repaired", 0))
        refused = int(counters.get("tool_arguments_unrepairable", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return []
    if not repaired and not refused:
        return []
    return [f"{repaired:,} tool call(s) with broken JSON arguments repaired, {refused:,} refused "
            "(Claude Code retried them) since the proxy started"]

