"""Loopback HTTP clients that time what a caller of the proxy sees (stdlib only).

* :class:`KeepAlive` sends non-streaming requests over one persistent
  connection, as Claude Code's HTTP client does, and times each exchange.
* :func:`stream` sends one streaming request over a raw socket and records the
  arrival time of every SSE event *and* of every ``recv()``: how many token
  events arrive in one read tells whether a relay buffers or coalesces chunks,
  which a higher-level client would hide.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

# A token-carrying event: Anthropic's content_block_delta, or an OpenAI chunk
# whose delta has non-empty content (the fake streams text answers only).
_ANTHROPIC_DELTA = b"content_block_delta"
_OPENAI_DELTA = b'"delta":{"content":"'


def is_token_event(event: bytes) -> bool:
    """True for an SSE event that carries a piece of the answer."""
    return _ANTHROPIC_DELTA in event or _OPENAI_DELTA in event


@dataclass
class Exchange:
    """One non-streaming request: status and wall time in seconds."""

    status: int
    seconds: float


class KeepAlive:
    """Sequential requests over one HTTP/1.1 keep-alive connection."""

    def __init__(self, host: str, port: int, timeout: float = 60.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._conn.connect()
            self._conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self._conn

    def post(self, path: str, payload: bytes, headers: dict[str, str]) -> Exchange:
        """POST and read the whole answer; a dropped connection is reopened once."""
        for attempt in (1, 2):
            conn = self._connection()
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=payload,
                             headers={"content-type": "application/json", **headers})
                resp = conn.getresponse()
                resp.read()
            except (http.client.RemoteDisconnected, ConnectionError, BrokenPipeError):
                self.close()
                if attempt == 2:
                    raise
                continue
            seconds = time.perf_counter() - t0
            if resp.will_close:
                self.close()
            return Exchange(resp.status, seconds)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass
class StreamResult:
    """What one streamed response looked like from the client's side."""

    status: int = 0
    t_send: float = 0.0
    t_first_byte: float = 0.0  # first byte of the response body
    t_end: float = 0.0
    token_times: list[float] = field(default_factory=list)  # arrival of each token event
    # Token events per recv() that delivered at least one token event.
    tokens_per_read: list[int] = field(default_factory=list)
    body_bytes: int = 0
    error: str = ""

    @property
    def ttfb(self) -> float:
        return self.t_first_byte - self.t_send if self.t_first_byte else float("nan")

    @property
    def total(self) -> float:
        return self.t_end - self.t_send

    def gaps(self) -> list[float]:
        """Seconds between consecutive token events."""
        t = self.token_times
        return [b - a for a, b in pairwise(t)]

    def tokens_per_second(self) -> float:
        """Token events per second between the first and the last one."""
        t = self.token_times
        if len(t) < 2 or t[-1] <= t[0]:
            return float("nan")
        return (len(t) - 1) / (t[-1] - t[0])

    def coalesced_fraction(self) -> float:
        """Share of token events that arrived in a read together with another one."""
        n = sum(self.tokens_per_read)
        return sum(k for k in self.tokens_per_read if k > 1) / n if n else float("nan")


class _Dechunker:
    """Incremental decoder of HTTP/1.1 chunked transfer encoding."""

    def __init__(self) -> None:
        self._buf = b""
        self._data_left = 0  # payload bytes left in the current chunk
        self._crlf_left = 0  # bytes of the CRLF that ends the current chunk
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """The payload bytes that ``data`` completes (possibly none)."""
        buf = self._buf + data
        out = []
        while buf and not self.done:
            if self._crlf_left:
                n = min(self._crlf_left, len(buf))
                buf, self._crlf_left = buf[n:], self._crlf_left - n
            elif self._data_left:
                n = min(self._data_left, len(buf))
                out.append(buf[:n])
                buf, self._data_left = buf[n:], self._data_left - n
                if not self._data_left:
                    self._crlf_left = 2
            else:
                end = buf.find(b"\r\n")
                if end < 0:
                    break
                size = int(buf[:end].split(b";", 1)[0], 16)
                buf = buf[end + 2:]
                if size == 0:
                    self.done = True
                self._data_left = size
        self._buf = buf
        return b"".join(out)


def stream(host: str, port: int, path: str, body: dict[str, Any] | bytes,
           headers: dict[str, str], timeout: float = 60.0) -> StreamResult:
    """POST a streaming request; record every token event's arrival time.

    ``timeout`` bounds the whole exchange, not only each read.
    """
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
            "Content-Type: application/json", f"Content-Length: {len(payload)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
    res = StreamResult()
    deadline = time.monotonic() + timeout
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        res.t_send = time.perf_counter()
        sock.sendall(request)
        _read_stream(sock, res, deadline)
    except (OSError, ValueError) as exc:
        res.error = f"{type(exc).__name__}: {exc}"
    finally:
        res.t_end = time.perf_counter()
        sock.close()
    return res


def _read_stream(sock: socket.socket, res: StreamResult, deadline: float) -> None:
    """The receive loop: headers, then body pieces split into SSE events."""
    raw = b""
    recv = sock.recv
    perf = time.perf_counter
    dechunk: _Dechunker | None = None
    length = -1
    pending = b""
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError("stream exceeded its time budget")
        data = recv(262144)
        t = perf()
        if not data:
            break
        if not res.status:
            raw += data
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                continue
            head, data = raw[:end].decode("latin-1"), raw[end + 4:]
            res.status = int(head.split(" ", 2)[1])
            lower = head.lower()
            if "transfer-encoding: chunked" in lower:
                dechunk = _Dechunker()
            for line in lower.split("\r\n"):
                if line.startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            if not data:
                continue
        if dechunk is not None:
            data = dechunk.feed(data)
        if data and not res.t_first_byte:
            res.t_first_byte = t
        res.body_bytes += len(data)
        pending += data
        if b"\r" in pending:  # sse-starlette frames events with CRLF
            pending = pending.replace(b"\r\n", b"\n")
        *events, pending = pending.split(b"\n\n")
        tokens = 0
        for event in events:
            if _ANTHROPIC_DELTA in event or _OPENAI_DELTA in event:
                tokens += 1
        if tokens:
            res.token_times.extend([t] * tokens)
            res.tokens_per_read.append(tokens)
        if (dechunk is not None and dechunk.done) or (length >= 0 and res.body_bytes >= length):
            break
    if pending.strip() and is_token_event(pending):
        res.token_times.append(perf())
        res.tokens_per_read.append(1)
