"""What LiteLLM's proxy itself calls: the hook, the key check, the count_tokens route.

custom_callbacks.py (the file config.yaml names) instantiates the hook as
``proxy_handler_instance``, names ``ccq_master_key_auth`` as the proxy's
``general_settings.custom_auth``, and calls ``install`` once:

``CcqAnthropicNormalizer``  The hook: on /v1/messages its pre-call hook normalizes the
                            request (normalizer.py) with the limits of the model asked
                            for (the alias' ``model_info`` in config.yaml).
``ccq_master_key_auth``     The master key (LITELLM_MASTER_KEY) gets in, anything else
                            gets 401.  Without it, LiteLLM 1.74 running without a
                            database answers a wrong key with 400 "No connected
                            db.", which Claude Code does not read as an auth failure.
``POST /v1/messages/count_tokens``  Anthropic's token count, which Claude Code's
                            gateway contract lists and 1.74 answers with 404.
``install``                 Applies ccq's LiteLLM patches (litellm_patches.py) and
                            adds the count_tokens route.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from . import litellm_patches, normalizer, startup

# The type: ignores on CustomLogger apply where mypy sees LiteLLM's types (its own venv); where
# it does not (.venv, pyproject.toml), CustomLogger is Any and they are unused.
try:  # The proxy always has LiteLLM; plain-Python unit tests may not.
    from litellm.integrations.custom_logger import CustomLogger
except ImportError:  # pragma: no cover - exercised only without LiteLLM
    CustomLogger = object  # type: ignore[assignment,misc,unused-ignore]

LOG = logging.getLogger("ccq.custom_callbacks")


# --------------------------------------------------------------------------
# The LiteLLM hook
# --------------------------------------------------------------------------

def _router_model_infos(alias: Any) -> list[Mapping[str, Any]]:
    """The ``model_info`` of each deployment of the proxy's model ``alias`` (the role
    writes them from ccq's model table, the one place that says what each Cerebras
    model can do)."""
    try:
        from litellm.proxy.proxy_server import llm_router
    except ImportError:  # plain-Python unit tests
        return []
    if llm_router is None or not isinstance(alias, str):
        return []
    return [d.get("model_info") or {} for d in llm_router.get_model_list(model_name=alias) or ()]


def router_takes_images(alias: Any) -> bool:
    """Whether ``alias`` takes images: its ``model_info.supports_vision``. Unknown: text only."""
    return any(info.get("supports_vision") is True for info in _router_model_infos(alias))


def router_max_output(alias: Any) -> int | None:
    """The most output tokens ``alias`` may ask for: its ``model_info.max_output_tokens``."""
    limits = [v for v in (info.get("max_output_tokens") for info in _router_model_infos(alias))
              if type(v) is int and v > 0]
    return min(limits) if limits else None


class CcqAnthropicNormalizer(CustomLogger):  # type: ignore[misc,valid-type,unused-ignore]
    """LiteLLM CustomLogger whose pre-call hook runs normalizer.normalize_request."""

    def __init__(self, policy: normalizer.ParamPolicy | None = None, max_tokens_ceiling: int | None = None,
                 takes_images: Callable[[Any], bool] = router_takes_images,
                 max_output: Callable[[Any], int | None] = router_max_output) -> None:
        if CustomLogger is not object:
            super().__init__()
        self._policy = policy
        self.takes_images = takes_images
        self.max_output = max_output
        self.max_tokens_ceiling = (
            max_tokens_ceiling if max_tokens_ceiling is not None else normalizer.max_tokens_ceiling_from_env()
        )

    @property
    def policy(self) -> normalizer.ParamPolicy:
        """The injected policy, else the one derived from the installed LiteLLM."""
        if self._policy is None:
            self._policy = normalizer.derive_param_policy()
        return self._policy

    def normalize(self, data: Any) -> Any:
        """normalize_request with the limits of the model ``data`` asks for."""
        alias = data.get("model") if isinstance(data, dict) else None
        model_limit = self.max_output(alias)
        ceiling = min(self.max_tokens_ceiling, model_limit) if model_limit else self.max_tokens_ceiling
        return normalizer.normalize_request(data, self.policy, ceiling, self.takes_images(alias))

    # LiteLLM calls this only if it is defined on the class itself
    # (ProxyLogging.pre_call_hook checks vars(type(callback))).
    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict[str, Any],
                                   call_type: str) -> Any:
        """Normalize /v1/messages requests; everything else passes untouched."""
        if call_type not in normalizer.ANTHROPIC_MESSAGES_CALL_TYPES:
            return data
        try:
            return self.normalize(data)
        except Exception as exc:  # noqa: BLE001 - never turn a request into a 500 of our own
            # Log the error type only: the body is the user's code.
            LOG.warning("ccq: request left as is; normalization failed with %s", type(exc).__name__)
            return data


# --------------------------------------------------------------------------
# POST /v1/messages/count_tokens (LiteLLM 1.74 has no such route)
# --------------------------------------------------------------------------

COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
# The tokenizer counted with: o200k_base, which LiteLLM ships in its own tiktoken cache (so
# it works offline). It is gpt-oss' vocabulary (o200k_harmony adds only chat-format tokens);
# for the Qwen and GLM models it is the nearest one a registry package carries. LiteLLM
# picks o200k_base for this model name.
COUNT_TOKENS_TOKENIZER_MODEL = "gpt-4o"


def count_input_tokens(body: Any, hook: CcqAnthropicNormalizer) -> int:
    """Tokens of the request /v1/messages would send upstream for ``body``.

    The body goes through ccq's normalization and LiteLLM's own Anthropic→OpenAI
    translation, as a /v1/messages request does; then LiteLLM counts the OpenAI
    messages (its per-message overheads included) and the tools' JSON.
    """
    import litellm
    from litellm.llms.anthropic.experimental_pass_through.adapters.transformation import (
        LiteLLMAnthropicMessagesAdapter,
    )

    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise ValueError("messages: a list of Anthropic messages is required")
    data = dict(body, max_tokens=body.get("max_tokens") or 1)
    normalized = hook.normalize(data)
    openai_request = LiteLLMAnthropicMessagesAdapter().translate_anthropic_to_openai(normalized)
    count: int = litellm.token_counter(model=COUNT_TOKENS_TOKENIZER_MODEL, messages=openai_request["messages"])
    tools = openai_request.get("tools")
    if tools:
        # The whole schemas, as the model's chat template writes them: LiteLLM's own tool
        # estimate follows OpenAI's private format and skips nested property descriptions,
        # which are most of Claude Code's 15 KB of tool definitions.
        count += litellm.token_counter(model=COUNT_TOKENS_TOKENIZER_MODEL,
                                       text=json.dumps(tools, ensure_ascii=False, separators=(",", ":")))
    return count


def add_count_tokens_route(hook: CcqAnthropicNormalizer) -> bool:
    """Serve COUNT_TOKENS_PATH on the proxy's app, behind the proxy's own key check.

    Anthropic's gateway contract for Claude Code lists it beside /v1/messages; 1.74
    answers it with 404.  Idempotent (a second load of the callback adds nothing).
    """
    from fastapi import Depends, Request
    from fastapi.responses import JSONResponse
    from litellm.proxy.auth.user_api_key_auth import user_api_key_auth
    from litellm.proxy.proxy_server import app

    if any(getattr(r, "path", None) == COUNT_TOKENS_PATH for r in app.routes):
        return False

    async def count_tokens(request: Request) -> Any:
        try:
            body = await request.json()
            return {"input_tokens": count_input_tokens(body, hook)}
        except Exception as exc:  # noqa: BLE001 - a malformed body is the client's error, said in Anthropic's shape
            return JSONResponse(status_code=400, content={"type": "error", "error": {
                "type": "invalid_request_error", "message": f"count_tokens: {exc}"}})

    # This module postpones annotations; FastAPI must see the Request class itself, not the
    # string "Request" it cannot resolve here (it would take it for a query parameter).
    count_tokens.__annotations__["request"] = Request
    app.add_api_route(COUNT_TOKENS_PATH, count_tokens, methods=["POST"],
                      dependencies=[Depends(user_api_key_auth)])
    return True


# --------------------------------------------------------------------------
# Authentication (general_settings.custom_auth)
# --------------------------------------------------------------------------

MASTER_KEY_ENV = "LITELLM_MASTER_KEY"


def is_master_key(presented: Any, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``presented`` is the proxy's master key (constant-time compare).

    An unset or empty master key matches nothing: the proxy must never run open.
    """
    expected = environ.get(MASTER_KEY_ENV, "")
    if not expected or not isinstance(presented, str) or not presented:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


async def ccq_master_key_auth(request: Any, api_key: str) -> Any:
    """LiteLLM custom_auth: the master key is admitted, every other bearer is a 401.

    LiteLLM has already stripped "Bearer " (or read x-api-key).  The exception
    text never contains the presented key; LiteLLM maps it to HTTP 401.
    """
    if not is_master_key(api_key):
        raise PermissionError("Authentication Error: missing or wrong proxy key (ccq reads it from ~/.secrets)")
    from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

    return UserAPIKeyAuth(api_key=api_key, user_role=LitellmUserRoles.PROXY_ADMIN)


# --------------------------------------------------------------------------
# What loading this file does inside the proxy
# --------------------------------------------------------------------------

def install(hook: CcqAnthropicNormalizer) -> None:
    """Apply ccq's LiteLLM patches (items k-r, unless CCQ_LITELLM_PATCHES=0; they refuse
    to start on any LiteLLM but 1.74.0.post2) and serve count_tokens for ``hook``.

    Without LiteLLM (plain-Python unit tests) there is nothing to patch.
    """
    if CustomLogger is object:
        return
    if litellm_patches.litellm_patches_enabled():
        litellm_patches.apply_litellm_patches()
    if "litellm.proxy.proxy_server" in sys.modules:
        add_count_tokens_route(hook)
        startup.report_if_skipped()


def proxy_policy() -> normalizer.ParamPolicy | None:
    """The parameter policy of the installed LiteLLM, derived once at load; None without
    LiteLLM (plain-Python unit tests), where the hook derives it on first use."""
    return normalizer.derive_param_policy() if CustomLogger is not object else None
