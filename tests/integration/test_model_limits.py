"""Each alias gets its model's limits, and the proxy paces requests to Cerebras' token quota.

The real LiteLLM 1.74.0.post2 with the role's config template (two aliases: the main model
and a background model, each with its own output limit and reasoning_effort from ccq's
table) and callback, on both relay paths, in front of a strict fake Cerebras that enforces
a per-minute token quota the way Cerebras does (max_tokens reserved up front, 429 when a
request does not fit, x-ratelimit-* headers on every answer). The quota window is 3 s
instead of 60 so the test stays short; the headers still say seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.http import messages, request
from helpers.stack import MODEL_ALIAS, FakeUpstream, LiteLLMProxy, served_model, upstream_and_proxies

pytestmark = pytest.mark.integration

MAIN_MODEL, BACKGROUND_MODEL = "gpt-oss-120b", "qwen-3.8-27b"
BACKGROUND_ALIAS = MODEL_ALIAS + "-background"
MODELS = [served_model(MODEL_ALIAS, MAIN_MODEL, max_output=2000, reasoning_effort="low"),
          served_model(BACKGROUND_ALIAS, BACKGROUND_MODEL, role="background", max_output=1000,
                       reasoning_effort="none")]
QUOTA, WINDOW_SECONDS = 6000, 3
# Proxies: the fast path and LiteLLM's own, paced; and one that does not pace, to show the
# quota really refuses what pacing avoids.
PROXIES = {"fast": {"CCQ_STREAM_FASTPATH": "debug", "CCQ_QUOTA_MAX_WAIT": "10"},
           "litellm": {"CCQ_STREAM_FASTPATH": "0", "CCQ_QUOTA_MAX_WAIT": "10"},
           "unpaced": {"CCQ_QUOTA_MAX_WAIT": "0"}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, litellm_venv: Path,
          callback_path: Path) -> Iterator[tuple[FakeUpstream, dict[str, LiteLLMProxy]]]:
    root = tmp_path_factory.mktemp("limits")
    fake = FakeUpstream(root / "fake", ["--strict", "--models", f"{MAIN_MODEL},{BACKGROUND_MODEL}",
                                        "--tokens-per-minute", str(QUOTA),
                                        "--quota-window-seconds", str(WINDOW_SECONDS)])
    with upstream_and_proxies(fake, lambda fake: {
            name: LiteLLMProxy(litellm_venv, root / name, fake, callback=callback_path, models=MODELS, extra_env=env)
            for name, env in PROXIES.items()}) as running:
        yield running


def stats(fake: FakeUpstream) -> dict[str, Any]:
    return request("GET", fake.url + "/_fake/stats").json()


def fresh_window(fake: FakeUpstream) -> None:
    """Start at the beginning of a quota window, with the counters at zero."""
    time.sleep(WINDOW_SECONDS)
    request("DELETE", fake.url + "/_fake/stats")


def ask(proxy: LiteLLMProxy, alias: str, stream: bool, text: str = "hi") -> Any:
    body = {"model": alias, "max_tokens": 32000, "stream": stream,
            "messages": [{"role": "user", "content": text}]}
    return messages(proxy.url, body, proxy.master_key)


@pytest.mark.parametrize("path", ["fast", "litellm"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_each_alias_reaches_its_model_with_its_output_limit_and_reasoning_effort(stack, path, stream):
    fake, proxies = stack
    fresh_window(fake)
    mark = fake.mark()
    for alias in (MODEL_ALIAS, BACKGROUND_ALIAS):
        reply = ask(proxies[path], alias, stream)
        assert reply.status == 200, reply.body[:500]
    sent = [record["body"] for record in fake.records_since(mark)]
    assert [(b["model"], b["max_tokens"], b["reasoning_effort"]) for b in sent] == [
        (MAIN_MODEL, 2000, "low"), (BACKGROUND_MODEL, 1000, "none")]
    assert all("disable_reasoning" not in b for b in sent)


def send_until_the_quota_is_tight(proxy: LiteLLMProxy, requests: int = 4) -> list[int]:
    """Requests of ~1,800 prompt tokens reserving 2,000 more: the quota of 6,000 a window
    admits two, then the third does not fit until the window turns."""
    text = "word " * 1450
    return [ask(proxy, MODEL_ALIAS, stream=True, text=f"{i} {text}").status for i in range(requests)]


@pytest.mark.parametrize("path", ["fast", "litellm"])
def test_the_proxy_waits_for_the_quota_instead_of_sending_a_request_it_knows_will_be_refused(stack, path):
    fake, proxies = stack
    fresh_window(fake)
    statuses = send_until_the_quota_is_tight(proxies[path])
    counts = stats(fake)
    print(f"\n{path}: statuses {statuses}, upstream {counts}")
    assert statuses == [200] * len(statuses)
    assert counts["rate_limited"] == 0, counts
    log = proxies[path].log_path.read_text(errors="replace")
    assert "waiting" in log and f"per-minute token quota of {MAIN_MODEL}" in log


def test_without_pacing_the_same_requests_meet_cerebras_429(stack):
    """The control: the quota really refuses, and the 429 reaches Claude Code as a rate_limit_error."""
    fake, proxies = stack
    fresh_window(fake)
    statuses = send_until_the_quota_is_tight(proxies["unpaced"])
    print(f"\nunpaced: statuses {statuses}, upstream {stats(fake)}")
    assert 429 in statuses
    assert stats(fake)["rate_limited"] >= 1


def test_ccq_status_can_read_the_last_quota_figures(stack):
    fake, proxies = stack
    fresh_window(fake)
    before = time.time()
    assert ask(proxies["fast"], BACKGROUND_ALIAS, stream=False).status == 200
    state = json.loads((proxies["fast"].workdir / "quota.json").read_text())
    figures = state["models"][BACKGROUND_MODEL]
    assert figures["tokens_limit"] == QUOTA
    assert 0 < figures["tokens_remaining"] < QUOTA
    assert before <= figures["seen_at"] <= time.time()
    assert figures["seen_at"] < figures["tokens_reset_at"] <= figures["seen_at"] + WINDOW_SECONDS
    assert figures["requests_day_limit"] == 14400
