"""A client that leaves mid-answer (Esc in Claude Code) ends the upstream request at once.

The real LiteLLM 1.74.0.post2 with the role's config and callback, on both relay
paths (the fast path, CCQ_STREAM_FASTPATH=debug, and LiteLLM's own,
CCQ_STREAM_FASTPATH=0), in front of one fake Cerebras with its quota on.  For each
path, streamed and not: the fake is given a slow answer (12 s), the client reads a
few events of it (streamed) or waits until the fake is generating it (not streamed),
then closes its socket.  The fake's own record of that answer
(``/_fake/answers``) must say that its connection was closed by the proxy within
1 s, before the whole answer was written; then the same proxy answers the next
request normally and its quota book (ccq_proxy/quota.py) holds the fake's own figures.
Item t of ccq_proxy/litellm_patches.py.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.http import assemble_stream, from_message, messages, request
from helpers.stack import MODEL_ALIAS, FakeUpstream, LiteLLMProxy, upstream_and_proxies

pytestmark = pytest.mark.integration

PATHS = ("fast", "litellm")
TOKENS_PER_MINUTE = 10_000_000
# The slow answer: WORDS text chunks, CHUNK_DELAY s apart (streamed), or sent whole after
# WORDS * CHUNK_DELAY s (not streamed).
WORDS, CHUNK_DELAY = 120, 0.1
# Its streamed chunks: the role chunk, one per word, the finish chunk and [DONE].
STREAM_CHUNKS = WORDS + 3
DELTAS_READ = 3
# Longest allowed time from the client's disconnect to the upstream connection's close.
CLOSE_WITHIN = 1.0
# How long to wait for the fake's record; longer than the whole answer, so that without
# the fix the record says "finished" rather than the test timing out.
RECORD_TIMEOUT = WORDS * CHUNK_DELAY + 10


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory, litellm_venv: Path,
          callback_path: Path) -> Iterator[tuple[FakeUpstream, dict[str, LiteLLMProxy]]]:
    """One fake upstream (quota on, a window longer than the module), and the proxy twice."""
    root = tmp_path_factory.mktemp("disconnect")
    fake = FakeUpstream(root / "fake", ["--strict", "--tokens-per-minute", str(TOKENS_PER_MINUTE),
                                        "--quota-window-seconds", "3600"])

    def proxies(fake: FakeUpstream) -> dict[str, LiteLLMProxy]:
        return {name: LiteLLMProxy(litellm_venv, root / name, fake, callback=callback_path,
                                   extra_env={"CCQ_STREAM_FASTPATH": mode})
                for name, mode in (("fast", "debug"), ("litellm", "0"))}

    with upstream_and_proxies(fake, proxies) as running:
        yield running


def queue_slow_answer(fake: FakeUpstream, marker: str) -> None:
    text = " ".join(f"w{i}" for i in range(WORDS))
    entry = {"kind": "completion", "message": {"role": "assistant", "content": text},
             "finish_reason": "stop", "chunk_delay": CHUNK_DELAY, "match": marker}
    resp = request("POST", fake.url + "/_fake/queue", {"responses": [entry]},
                   {"content-type": "application/json"})
    assert resp.status == 200, resp.body


def open_messages(proxy: LiteLLMProxy, body: dict[str, Any]) -> socket.socket:
    """POST /v1/messages on a raw socket (the test decides when it is closed)."""
    payload = json.dumps(body).encode()
    head = ("POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"anthropic-version: 2023-06-01\r\nauthorization: Bearer {proxy.master_key}\r\n"
            f"content-length: {len(payload)}\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    sock.sendall(head + payload)
    return sock


def wait_for(what: str, probe: Any, timeout: float) -> Any:
    """Poll ``probe()`` until it returns something truthy, with a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def answer_record(fake: FakeUpstream, index: int, ended: bool) -> dict[str, Any] | None:
    records = fake.answers()
    if len(records) <= index or (ended and records[index]["outcome"] is None):
        return None
    return records[index]


def quota_book(proxy: LiteLLMProxy) -> dict[str, Any]:
    return json.loads((proxy.workdir / "quota.json").read_text(encoding="utf-8"))["models"][MODEL_ALIAS]


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
@pytest.mark.parametrize("path", PATHS)
def test_a_client_that_leaves_ends_the_upstream_request(relay: tuple[FakeUpstream, dict[str, LiteLLMProxy]],
                                                       path: str, stream: bool) -> None:
    fake, proxies = relay
    proxy = proxies[path]
    marker = f"ccq-esc-{path}-{'streamed' if stream else 'whole'}"
    index = len(fake.answers())
    queue_slow_answer(fake, marker)
    sock = open_messages(proxy, {"model": MODEL_ALIAS, "max_tokens": 1024, "stream": stream,
                                 "messages": [{"role": "user", "content": f"{marker}: write a lot"}]})
    try:
        if stream:
            received = b""
            while received.count(b"event: content_block_delta") < DELTAS_READ:
                chunk = sock.recv(65536)
                assert chunk, f"the proxy ended the stream early: {received[-500:]!r}"
                received += chunk
        else:
            wait_for("the fake to start generating the answer",
                     lambda: answer_record(fake, index, ended=False), 30)
        assert fake.answers()[index]["outcome"] is None, "the slow answer ended before the client left"
    finally:
        sock.close()
    left = time.time()

    record = wait_for("the fake's record of the answer's end",
                      lambda: answer_record(fake, index, ended=True), RECORD_TIMEOUT)
    total = STREAM_CHUNKS if stream else 1
    print(f"\n{path} path, {'streamed' if stream else 'not streamed'}: upstream {record['outcome']} "
          f"{record['ended'] - left:.3f}s after the client left; {record['chunks_written']} of {total} "
          f"chunks written")
    assert record["stream"] is stream
    assert record["outcome"] == "client_closed", record
    assert record["ended"] - left < CLOSE_WITHIN, record
    assert record["chunks_written"] < total

    # The same proxy answers the next request in full, and its quota book is the fake's own.
    resp = messages(proxy.url, {"model": MODEL_ALIAS, "max_tokens": 64, "stream": stream,
                                "messages": [{"role": "user", "content": "hi"}]}, proxy.master_key)
    assert resp.status == 200, resp.body
    result = assemble_stream(resp.body) if stream else from_message(resp.json())
    assert (result.text, result.stop_reason) == ("ccq-fake: done", "end_turn")
    assert fake.answers()[-1]["outcome"] == "finished"
    charged = request("GET", fake.url + "/_fake/stats").json()["tokens_charged"]
    assert quota_book(proxy)["tokens_remaining"] == TOKENS_PER_MINUTE - charged
    # An ended request is no error (LiteLLM's middleware logs one for an app without a response).
    assert "Exception in ASGI application" not in proxy.log_path.read_text(encoding="utf-8", errors="replace")
