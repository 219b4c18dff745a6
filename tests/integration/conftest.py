"""Fixtures of the integration tests that run a script in the pinned LiteLLM venv
(test_callback_litellm.py, test_stream_fastpath_litellm.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.callback_support import litellm_python_from_env


@pytest.fixture(scope="module")
def litellm_python(request: pytest.FixtureRequest) -> str:
    """A python interpreter with the pinned LiteLLM."""
    explicit = litellm_python_from_env()
    if explicit:
        assert Path(explicit).exists(), f"CCQ_LITELLM_PYTHON={explicit} does not exist"
        return explicit
    try:
        venv = request.getfixturevalue("litellm_venv")
    except pytest.FixtureLookupError:
        pytest.skip("no LiteLLM: set CCQ_LITELLM_PYTHON or run from the repo's tests/ tree")
    return str(Path(venv) / "bin" / "python")
