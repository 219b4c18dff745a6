"""Small stdlib HTTP helpers for the integration tests (no extra packages)."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

ANTHROPIC_HEADERS = {"content-type": "application/json", "anthropic-version": "2023-06-01"}


@dataclass
class Response:
    """Status, headers and the whole body of one HTTP exchange."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
            timeout: float = 60.0) -> Response:
    """One request; the whole body is read (streams included)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    payload = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=payload,
                     headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def messages(proxy_url: str, body: dict[str, Any], token: str | None,
             timeout: float = 60.0) -> Response:
    """POST /v1/messages as Claude Code does (bearer token, anthropic-version)."""
    headers = dict(ANTHROPIC_HEADERS)
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return request("POST", proxy_url + "/v1/messages", body, headers, timeout)


def sse_events(raw: bytes) -> list[tuple[str, Any]]:
    """Parse an SSE body into (event name, parsed data) pairs."""
    events = []
    for block in raw.decode("utf-8").split("\n\n"):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            text = "\n".join(data)
            try:
                events.append((name, json.loads(text)))
            except ValueError:
                events.append((name, text))
    return events


@dataclass
class AnthropicResult:
    """What a client makes of an Anthropic response, streamed or not."""

    stop_reason: str | None
    blocks: list[dict[str, Any]]
    events: list[str]
    usage: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        return "".join(b.get("text", "") for b in self.blocks if b.get("type") == "text")

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        return [b for b in self.blocks if b.get("type") == "tool_use"]


def assemble_stream(raw: bytes) -> AnthropicResult:
    """Rebuild the content blocks from Anthropic SSE events, as the SDK does.

    A tool_use block's input is the JSON of its concatenated input_json_delta
    pieces (or {} when none arrived, which is what Claude Code then sees).
    """
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, str] = {}
    stop_reason = None
    usage = None
    names = []
    for name, data in sse_events(raw):
        names.append(name)
        if not isinstance(data, dict):
            continue
        kind = data.get("type")
        if kind == "content_block_start":
            blocks[data["index"]] = dict(data["content_block"])
        elif kind == "content_block_delta":
            delta = data["delta"]
            block = blocks.setdefault(data["index"], {"type": "text", "text": ""})
            if delta.get("type") == "text_delta":
                block["text"] = block.get("text", "") + delta.get("text", "")
            elif delta.get("type") == "input_json_delta":
                partial[data["index"]] = partial.get(data["index"], "") + delta.get("partial_json", "")
        elif kind == "message_delta":
            stop_reason = data.get("delta", {}).get("stop_reason") or stop_reason
            usage = data.get("usage") or usage
    for index, text in partial.items():
        blocks[index]["input"] = json.loads(text) if text else {}
    return AnthropicResult(stop_reason, [blocks[i] for i in sorted(blocks)], names, usage)


def from_message(body: dict[str, Any]) -> AnthropicResult:
    """The same view of a non-streaming Anthropic message."""
    return AnthropicResult(body.get("stop_reason"), list(body.get("content") or []), [], body.get("usage"))


def wait_http_ok(url: str, timeout: float, proc: Any = None) -> None:
    """Poll a URL until it answers 200 (or the process dies, or time runs out)."""
    deadline = time.monotonic() + timeout
    last: Exception | str = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # loopback only
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s: {last}")
