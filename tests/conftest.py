"""Shared pytest fixtures for ccq's host-side tests.

The integration fixtures build the pinned LiteLLM and Claude Code into
``.cache/`` on first use (see tests/helpers/installs.py), then start the fake
Cerebras upstream (strict mode, request log) and LiteLLM in front of it with
the role's config template and the callback under test.  Everything binds
127.0.0.1 on free ports and is stopped at the end of the session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import installs
from helpers.stack import (
    CLAUDE_CODE_REQUESTS_DIR,
    EMPTY_CONTENT_ALIAS,
    MODEL_ALIAS,
    UNSERVED_MODEL_ALIAS,
    FakeUpstream,
    LiteLLMProxy,
    ProxyStack,
    pick_callback,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "integration: needs the pinned LiteLLM / Claude Code (built into .cache/ on first "
        "use) and starts local servers; slow",
    )


def pytest_report_header(config: pytest.Config) -> str:
    pins = installs.read_pins()
    callback = pick_callback()
    shown = callback.relative_to(installs.REPO_ROOT) if callback.is_relative_to(installs.REPO_ROOT) else callback
    return (f"ccq pins: litellm {pins.litellm_version}, openai{pins.openai_spec}, "
            f"claude-code {pins.claude_code_version}; callback under test: {shown}")


@pytest.fixture(scope="session")
def pins() -> installs.Pins:
    """The versions ccq deploys (roles' defaults)."""
    return installs.read_pins()


@pytest.fixture(scope="session")
def litellm_venv(pins: installs.Pins) -> Path:
    """The cached venv with the pinned LiteLLM and openai."""
    return installs.ensure_litellm_venv(pins)


@pytest.fixture(scope="session")
def claude_code_bin(pins: installs.Pins) -> Path:
    """The cached pinned Claude Code binary."""
    return installs.ensure_claude_code(pins)


@pytest.fixture(scope="session")
def callback_path() -> Path:
    """The callback file the proxy loads (the role's)."""
    return pick_callback()


@pytest.fixture
def make_fake(tmp_path: Path) -> Iterator[Callable[..., FakeUpstream]]:
    """Factory: start a fake upstream with extra CLI args; stopped after the test."""
    started: list[FakeUpstream] = []

    def _make(*args: str, api_key: str | None = None) -> FakeUpstream:
        fake = FakeUpstream(tmp_path / f"fake{len(started)}", list(args))
        if api_key:
            fake.api_key = api_key
        started.append(fake.start())
        return fake

    yield _make
    for fake in started:
        fake.stop()


@pytest.fixture(scope="session")
def proxy_stack(tmp_path_factory: pytest.TempPathFactory, litellm_venv: Path,
                callback_path: Path) -> Iterator[ProxyStack]:
    """LiteLLM (role template + callback under test) in front of strict fakes.

    One proxy for the session (it takes seconds to start); each shape of the
    fake is a separate alias in its config.
    """
    root = tmp_path_factory.mktemp("stack")
    fake = FakeUpstream(root / "fake", ["--strict"]).start()
    fake_empty = FakeUpstream(root / "fake-empty", ["--strict", "--empty-content-shape", "empty"],
                              api_key=fake.api_key)
    proxy = None
    try:
        fake_empty.start()
        extra = [
            {"model_name": EMPTY_CONTENT_ALIAS, "litellm_params": {
                "model": f"cerebras/{MODEL_ALIAS}", "api_base": fake_empty.api_base,
                "api_key": "os.environ/CEREBRAS_API_KEY"}},
            {"model_name": UNSERVED_MODEL_ALIAS, "litellm_params": {
                "model": "cerebras/ccq-model-the-fake-does-not-serve", "api_base": fake.api_base,
                "api_key": "os.environ/CEREBRAS_API_KEY"}},
        ]
        proxy = LiteLLMProxy(litellm_venv, root / "litellm", fake, callback=callback_path,
                             extra_models=extra).start()
        yield ProxyStack(proxy, fake, fake_empty)
    finally:
        if proxy is not None:
            proxy.stop()
        fake_empty.stop()
        fake.stop()


@pytest.fixture(scope="session")
def claude_code_requests() -> list[Path]:
    """The captured Claude Code request bodies (tests/fixtures/claude_code_requests)."""
    return sorted(p for p in CLAUDE_CODE_REQUESTS_DIR.glob("*.json") if p.name != "index.json")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``claude_code_request`` over every captured fixture file."""
    if "claude_code_request" in metafunc.fixturenames:
        files = sorted(p for p in CLAUDE_CODE_REQUESTS_DIR.glob("*.json") if p.name != "index.json")
        metafunc.parametrize("claude_code_request", files, ids=[p.stem for p in files])
