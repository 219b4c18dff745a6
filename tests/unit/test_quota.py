"""ccq_proxy/quota.py: Cerebras' rate-limit figures kept per model, and the wait before a request."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.modules import load_proxy_module

quota = load_proxy_module("quota")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def headers(remaining: int, reset: float, limit: int = 150_000, day_remaining: int = 14_000) -> dict[str, str]:
    """What Cerebras sends with every answer (header names as the server wrote them)."""
    return {
        "X-RateLimit-Limit-Tokens-Minute": str(limit),
        "x-ratelimit-remaining-tokens-minute": str(remaining),
        "x-ratelimit-reset-tokens-minute": f"{reset:.2f}",
        "x-ratelimit-limit-requests-day": "14400",
        "x-ratelimit-remaining-requests-day": str(day_remaining),
        "x-ratelimit-reset-requests-day": "51234.5",
        "content-type": "application/json",
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def book(clock: Clock, tmp_path: Path) -> quota.QuotaBook:
    return quota.QuotaBook(max_wait=60, state_file=str(tmp_path / "quota.json"), clock=clock)


def test_request_cost_is_the_prompt_estimate_plus_the_reserved_output() -> None:
    assert quota.request_cost({"max_tokens": 1000}, 4000) == 2000
    assert quota.request_cost({"max_completion_tokens": 500, "max_tokens": 9}, 400) == 600
    assert quota.request_cost({}, 41) == 10


def test_an_unknown_model_is_never_held_back(book: quota.QuotaBook) -> None:
    assert book.wait_before("gpt-oss-120b", 10**9) == 0


def test_a_request_that_fits_goes_and_takes_its_share(book: quota.QuotaBook) -> None:
    book.record("gpt-oss-120b", headers(remaining=50_000, reset=30))
    assert book.wait_before("gpt-oss-120b", 30_000) == 0
    # The next one sees the first one's reservation until Cerebras' own figures arrive.
    assert book.wait_before("gpt-oss-120b", 30_000) == pytest.approx(30 + quota.RESET_MARGIN)


def test_a_request_that_does_not_fit_waits_for_the_window_to_turn(book: quota.QuotaBook, clock: Clock) -> None:
    book.record("gpt-oss-120b", headers(remaining=10_000, reset=12.5))
    clock.now += 2.5
    assert book.wait_before("gpt-oss-120b", 20_000) == pytest.approx(10 + quota.RESET_MARGIN)
    clock.now += 10 + quota.RESET_MARGIN
    # The window turned: the whole limit is there again, and this request takes its share.
    assert book.wait_before("gpt-oss-120b", 20_000) == 0
    assert book.quotas["gpt-oss-120b"].tokens_remaining == 130_000


def test_quotas_are_per_model(book: quota.QuotaBook) -> None:
    book.record("gpt-oss-120b", headers(remaining=0, reset=40))
    book.record("qwen-3.8-27b", headers(remaining=90_000, reset=40))
    assert book.wait_before("gpt-oss-120b", 1_000) > 0
    assert book.wait_before("qwen-3.8-27b", 1_000) == 0


@pytest.mark.parametrize("case", ["wait longer than the bound", "larger than the whole limit", "pacing off"])
def test_waits_that_cannot_help_are_not_made(clock: Clock, case: str) -> None:
    book = quota.QuotaBook(max_wait=0 if case == "pacing off" else 60, clock=clock)
    reset = 3600 if case == "wait longer than the bound" else 30
    book.record("m", headers(remaining=100, reset=reset, limit=150_000))
    cost = 200_000 if case == "larger than the whole limit" else 5_000
    assert book.wait_before("m", cost) == 0


def test_a_429_with_the_headers_holds_the_next_request(book: quota.QuotaBook) -> None:
    book.record("m", headers(remaining=0, reset=33.5))
    assert book.wait_before("m", 1) == pytest.approx(33.5 + quota.RESET_MARGIN)


def test_answers_without_rate_limit_headers_change_nothing(book: quota.QuotaBook, tmp_path: Path) -> None:
    book.record("m", {"content-type": "text/event-stream"})
    assert book.quotas == {}
    assert not (tmp_path / "quota.json").exists()


@pytest.mark.parametrize("bad", ["", "soon", "-5", "nan", "inf"])
def test_garbled_figures_are_ignored_not_trusted(book: quota.QuotaBook, bad: str) -> None:
    book.record("m", {"x-ratelimit-remaining-tokens-minute": bad, "x-ratelimit-reset-tokens-minute": "10"})
    assert book.wait_before("m", 10**6) == 0


def test_the_state_file_holds_the_last_figures_for_ccq_status(book: quota.QuotaBook, clock: Clock,
                                                               tmp_path: Path) -> None:
    book.record("gpt-oss-120b", headers(remaining=45_000, reset=21, day_remaining=13_999))
    state = json.loads((tmp_path / "quota.json").read_text())
    entry = state["models"]["gpt-oss-120b"]
    assert entry["tokens_limit"] == 150_000 and entry["tokens_remaining"] == 45_000
    assert entry["tokens_reset_at"] == pytest.approx(clock.now + 21)
    assert entry["requests_day_limit"] == 14_400 and entry["requests_day_remaining"] == 13_999
    assert entry["seen_at"] == clock.now
    assert [p.name for p in tmp_path.iterdir()] == ["quota.json"]  # no temporary file left


def test_an_unwritable_state_file_does_not_break_a_request(clock: Clock, tmp_path: Path) -> None:
    book = quota.QuotaBook(max_wait=60, state_file=str(tmp_path / "missing-dir" / "quota.json"), clock=clock)
    book.record("m", headers(remaining=5, reset=10))
    assert book.quotas["m"].tokens_remaining == 5


@pytest.mark.parametrize("raw, expected", [(None, 60.0), ("0", 0.0), (" 12.5 ", 12.5)])
def test_settings_from_the_environment(raw: str | None, expected: float, tmp_path: Path) -> None:
    env = {"CCQ_QUOTA_STATE": str(tmp_path / "q.json")}
    if raw is not None:
        env["CCQ_QUOTA_MAX_WAIT"] = raw
    book = quota.quota_book_from_env(env)
    assert book.max_wait == expected and book.state_file == str(tmp_path / "q.json")


@pytest.mark.parametrize("raw", ["soon", "-1", "nan"])
def test_a_bad_max_wait_stops_the_proxy_with_the_variable_named(raw: str) -> None:
    with pytest.raises(ValueError, match="CCQ_QUOTA_MAX_WAIT"):
        quota.quota_book_from_env({"CCQ_QUOTA_MAX_WAIT": raw})


# Claude Code's auto-mode classifier as it reached the upstream (both stages), and a request of the work itself.
CLASSIFIER_STAGE_1 = {"model": "gpt-oss-120b", "max_tokens": 2112, "stop": ["</block>"], "messages": [
    {"role": "system", "content": "You are a security monitor for autonomous AI coding agents.\n\n## Context"},
    {"role": "user", "content": "<transcript>...</transcript> Your ENTIRE response MUST begin with <block>."}]}
CLASSIFIER_STAGE_2 = {**{k: v for k, v in CLASSIFIER_STAGE_1.items() if k != "stop"}, "max_tokens": 10240}
WORK_REQUEST = {"model": "gpt-oss-120b", "max_tokens": 16384, "messages": [
    {"role": "system", "content": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI"}]},
    {"role": "user", "content": "Explain what a security monitor is. Answer in <block> tags."}]}


@pytest.mark.parametrize(("body", "purpose"), [
    (CLASSIFIER_STAGE_1, quota.AUTO_MODE_CHECK), (CLASSIFIER_STAGE_2, quota.AUTO_MODE_CHECK),
    (WORK_REQUEST, quota.WORK), ({"messages": "garbled"}, quota.WORK), ({}, quota.WORK)])
def test_auto_mode_checks_are_told_from_the_work(body: dict, purpose: str) -> None:
    assert quota.request_purpose(body) == purpose


def test_the_state_file_gives_each_purpose_its_share(book: quota.QuotaBook, tmp_path: Path) -> None:
    for body in (WORK_REQUEST, CLASSIFIER_STAGE_1, CLASSIFIER_STAGE_1):
        book.count(quota.request_purpose(body), 1000)
    book.counters = {"tool_arguments_repaired": 3}
    book.record("gpt-oss-120b", headers(remaining=45_000, reset=21))
    state = json.loads((tmp_path / "quota.json").read_text())
    assert state["counters"] == {"tool_arguments_repaired": 3}
    assert state["purposes"] == {quota.WORK: {"requests": 1, "tokens": 1000},
                                 quota.AUTO_MODE_CHECK: {"requests": 2, "tokens": 2000}}


def test_without_rate_limit_headers_the_counts_still_reach_the_state_file(book: quota.QuotaBook,
                                                                        tmp_path: Path) -> None:
    book.count(quota.AUTO_MODE_CHECK, 500)
    book.record("m", {"content-type": "text/event-stream"})
    state = json.loads((tmp_path / "quota.json").read_text())
    assert state["models"] == {} and state["purposes"][quota.AUTO_MODE_CHECK] == {"requests": 1, "tokens": 500}
