"""What ccq cuts from LiteLLM's start, before LiteLLM is imported (issue 25).

Run by before_litellm/sitecustomize.py, which Python runs at the proxy's start: the proxy's
environment file puts that directory on PYTHONPATH. Importing litellm.proxy.proxy_server
builds its 333 HTTP routes with FastAPI, each twice (its router's decorator, then
include_router), about a third of the proxy's start (0.8 to 1.2 s of 3 s on a 2-core machine).
ccq serves a handful of them: Claude Code's /v1/messages and count_tokens, the model list and
the health checks `ccq doctor` reads, and OpenAI-compatible chat. The others (keys, teams,
spend, files, the admin UI's API, realtime websockets, Prometheus' /metrics with the middleware
that guards it) are not built. Nor is the MCP gateway's SDK imported (about 0.15 s).

Guarded like the patches, but a mismatch stops nothing, as a cut only saves time: the cut
is made only for LiteLLM PATCHED_LITELLM_VERSION whose proxy_server.py (the file that
registers the routes) hashes to its FILE_FINGERPRINTS entry. Otherwise every route is kept and
the log says why. CCQ_ONLY_SERVED_ROUTES=0 keeps every route too.

Nothing here may import LiteLLM: it runs before LiteLLM's import, to change what that builds.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from .guard import PATCHED_LITELLM_VERSION, mark

# The paths ccq serves, whole (router prefix and path): Claude Code's two (ccq_proxy/hook.py
# adds count_tokens), what ccq doctor reads, and OpenAI-compatible chat for other clients.
SERVED_PATHS = re.compile(r"^(/v1)?/(messages(/count_tokens)?|models|model/info|chat/completions"
                          r"|health(/(liveliness|liveness|readiness))?)$")
# sha256 (first 16 hex) of each LiteLLM file the cut depends on, recorded from 1.74.0.post2
# (make record-patch-sources): proxy_server.py imports every router and registers its own routes.
FILE_FINGERPRINTS: dict[str, str] = {
    "litellm/proxy/proxy_server.py": "1acb8f56a7c2bf88",
}
ENABLED_ENV = "CCQ_ONLY_SERVED_ROUTES"
# The middleware proxy_server.py adds for a route the cut leaves out (/metrics).
UNUSED_MIDDLEWARE = "PrometheusAuthMiddleware"
# The SDK of LiteLLM's MCP gateway, whose routes the cut leaves out. LiteLLM 1.74 runs without
# it, as on Python 3.8 where it cannot be installed: every import of it is in a try block
# (mcp_server/server.py's MCP_AVAILABLE, rest_endpoints.py) or behind utils.is_mcp_available().
UNUSED_PACKAGE = "mcp"


def skip_package(name: str, modules: dict[str, Any] = sys.modules) -> None:
    """Make ``import name`` raise ImportError, as when the package is not installed: a None entry
    in sys.modules stops the import system before it looks for the package."""
    modules.setdefault(name, None)


def file_hashes() -> dict[str, str]:
    """The installed files' hashes, by the names FILE_FINGERPRINTS uses; read as files, since
    importing them is what is cut."""
    litellm = metadata.distribution("litellm")
    return {name: hashlib.sha256(Path(str(litellm.locate_file(name))).read_bytes()).hexdigest()[:16]
            for name in FILE_FINGERPRINTS}


def asked_off(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the user turned the cut off (CCQ_ONLY_SERVED_ROUTES=0)."""
    return environ.get(ENABLED_ENV, "1").strip() == "0"


def why_not_cut(environ: Mapping[str, str] = os.environ) -> str:
    """'' when the routes may be cut, or when the user turned the cut off (nothing to report);
    otherwise why every route is kept."""
    if asked_off(environ):
        return ""
    try:
        version = metadata.version("litellm")
        if version != PATCHED_LITELLM_VERSION:
            return f"LiteLLM {version} is installed, the cut is written for {PATCHED_LITELLM_VERSION}"
        changed = sorted(name for name, digest in file_hashes().items() if FILE_FINGERPRINTS[name] != digest)
        if changed:
            return f"{', '.join(changed)} differs from LiteLLM {PATCHED_LITELLM_VERSION}'s"
    except (metadata.PackageNotFoundError, OSError) as exc:
        return f"LiteLLM's files cannot be read ({exc})"
    return ""


def keep_only_served_routes(router_class: Any) -> None:
    """Make ``router_class`` (FastAPI's APIRouter) register only SERVED_PATHS, and no websocket."""
    add_route: Callable[..., Any] = router_class.add_api_route
    add_websocket: Callable[..., Any] = router_class.add_api_websocket_route

    def add_api_route(self: Any, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        if SERVED_PATHS.match(self.prefix + path):
            add_route(self, path, endpoint, **options)

    def add_api_websocket_route(self: Any, path: str, endpoint: Callable[..., Any], *args: Any, **options: Any) -> None:
        return None

    router_class.add_api_route = mark(add_api_route, add_route)
    router_class.add_api_websocket_route = mark(add_api_websocket_route, add_websocket)


def leave_out_middleware(app_class: Any, name: str) -> None:
    """Make ``app_class`` (Starlette's application) skip adding the middleware class ``name``."""
    add_middleware: Callable[..., Any] = app_class.add_middleware

    def add_middleware_but(self: Any, middleware_class: Any, *args: Any, **options: Any) -> None:
        if getattr(middleware_class, "__name__", "") != name:
            add_middleware(self, middleware_class, *args, **options)

    app_class.add_middleware = mark(add_middleware_but, add_middleware)


class _ThisProcess:
    """Whether install() ran in this process: sitecustomize runs it before LiteLLM's import."""

    installed_before_litellm = False


def install(environ: Mapping[str, str] = os.environ) -> bool:
    """Cut the routes ccq does not serve, when the guard allows; whether it did."""
    _ThisProcess.installed_before_litellm = True
    if asked_off(environ):
        return False
    reason = why_not_cut(environ)
    if reason:
        print(f"ccq: every LiteLLM route is kept: {reason} (set {ENABLED_ENV}=0 to silence this)",
              file=sys.stderr, flush=True)
        return False
    from fastapi import routing  # not LiteLLM: FastAPI alone imports in a tenth of a second
    from starlette import applications

    keep_only_served_routes(routing.APIRouter)
    # It guards the Prometheus /metrics route, which is not built; as a BaseHTTPMiddleware it
    # runs every request in a task of its own, about 1 ms of each request's CPU here.
    leave_out_middleware(applications.Starlette, UNUSED_MIDDLEWARE)
    skip_package(UNUSED_PACKAGE)
    return True


def report_if_skipped(environ: Mapping[str, str] = os.environ) -> bool:
    """Called once LiteLLM is up (hook.install): when the cut was never tried, because Python
    did not find before_litellm/ on PYTHONPATH, the log says so (a silent start-up cost
    otherwise). Whether it reported."""
    if _ThisProcess.installed_before_litellm or asked_off(environ):
        return False
    print(f"ccq: every LiteLLM route is kept: ccq's start-up did not run before LiteLLM (PYTHONPATH must name "
          f"ccq_proxy.zip/ccq_proxy/before_litellm, as litellm.env does; set {ENABLED_ENV}=0 to silence this)",
          file=sys.stderr, flush=True)
    return True
