"""The start-up cut (ccq_proxy/startup.py): LiteLLM builds only the routes ccq serves, and only
for the LiteLLM it was checked against; otherwise every route is kept and the log says why.
In-process, on a stand-in router class: the proxy's own routes are tested in
tests/integration/test_startup_cut_litellm.py."""

from __future__ import annotations

import pytest

from helpers.modules import load_proxy_module

startup = load_proxy_module("startup")
guard = load_proxy_module("guard")

SERVED = ["/v1/messages", "/v1/messages/count_tokens", "/v1/models", "/models", "/health/liveliness",
          "/health/readiness", "/health", "/v1/chat/completions", "/chat/completions", "/model/info"]
NOT_SERVED = ["/key/generate", "/key/info", "/spend/logs", "/v1/files", "/user/new", "/", "/v1/messages/batches",
              "/health/services", "/v1/models/gpt-4", "/metrics", "/v1/responses"]


class Router:
    """FastAPI's APIRouter as far as the cut sees it: a prefix and the two ways to add a route."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.routes: list[str] = []

    def add_api_route(self, path, endpoint, **options):
        self.routes.append(self.prefix + path)

    def add_api_websocket_route(self, path, endpoint, name=None, **options):
        self.routes.append("ws:" + self.prefix + path)


def cut_router_class() -> type[Router]:
    router_class = type("CutRouter", (Router,), {})
    startup.keep_only_served_routes(router_class)
    return router_class


@pytest.mark.parametrize("path", SERVED)
def test_a_path_ccq_serves_is_registered(path: str) -> None:
    router = cut_router_class()()
    router.add_api_route(path, lambda: None, methods=["GET"])
    assert router.routes == [path]


@pytest.mark.parametrize("path", NOT_SERVED)
def test_a_path_ccq_does_not_serve_is_not(path: str) -> None:
    router = cut_router_class()()
    router.add_api_route(path, lambda: None, methods=["POST"])
    assert router.routes == []


def test_the_router_prefix_counts_and_no_websocket_is_registered() -> None:
    router = cut_router_class()(prefix="/v1")
    router.add_api_route("/messages", lambda: None)
    router.add_api_route("/realtime", lambda: None)
    router.add_api_websocket_route("/realtime", lambda: None)
    assert router.routes == ["/v1/messages"]


def test_the_cut_is_marked_as_ccqs_and_fingerprints_see_fastapis_function() -> None:
    router_class = cut_router_class()
    assert guard.is_marked(router_class.add_api_route)
    assert router_class.add_api_route.__wrapped__ is Router.add_api_route


def test_another_litellm_keeps_every_route_and_says_why(monkeypatch, capsys) -> None:
    monkeypatch.setattr(startup.metadata, "version", lambda name: "1.75.0")
    reason = f"LiteLLM 1.75.0 is installed, the cut is written for {guard.PATCHED_LITELLM_VERSION}"
    assert startup.why_not_cut({}) == reason
    assert startup.install({}) is False
    assert "ccq: every LiteLLM route is kept: LiteLLM 1.75.0 is installed" in capsys.readouterr().err


def test_a_changed_proxy_server_keeps_every_route(monkeypatch) -> None:
    monkeypatch.setattr(startup.metadata, "version", lambda name: guard.PATCHED_LITELLM_VERSION)
    monkeypatch.setattr(startup, "file_hashes", lambda: {"litellm/proxy/proxy_server.py": "0" * 16})
    assert startup.why_not_cut({}) == (f"litellm/proxy/proxy_server.py differs from LiteLLM "
                                       f"{guard.PATCHED_LITELLM_VERSION}'s")


def test_turned_off_it_cuts_nothing_and_says_nothing(monkeypatch, capsys) -> None:
    monkeypatch.setattr(startup.metadata, "version", lambda name: "1.75.0")
    assert startup.install({"CCQ_ONLY_SERVED_ROUTES": "0"}) is False
    assert capsys.readouterr().err == ""


def test_the_middleware_of_a_route_not_built_is_left_out_and_others_stay() -> None:
    class App:
        def __init__(self) -> None:
            self.middleware: list[str] = []

        def add_middleware(self, middleware_class, *args, **options):
            self.middleware.append(middleware_class.__name__)

    app_class = type("CutApp", (App,), {})
    startup.leave_out_middleware(app_class, startup.UNUSED_MIDDLEWARE)
    app = app_class()
    for name in ("CORSMiddleware", startup.UNUSED_MIDDLEWARE, "SomeOtherMiddleware"):
        app.add_middleware(type(name, (), {}), allow_origins=["*"])
    assert app.middleware == ["CORSMiddleware", "SomeOtherMiddleware"]


def test_a_skipped_package_is_a_none_entry_which_import_treats_as_not_installed() -> None:
    # LiteLLM's own checks then see no MCP SDK (tests/integration/test_startup_cut_litellm.py).
    modules: dict[str, object] = {}
    startup.skip_package("mcp", modules)
    assert modules == {"mcp": None}


def test_an_already_imported_package_is_left_alone() -> None:
    modules: dict[str, object] = {"mcp": "the real module"}
    startup.skip_package("mcp", modules)
    assert modules == {"mcp": "the real module"}


def test_a_proxy_started_without_the_cut_says_so_once_litellm_is_up(monkeypatch, capsys) -> None:
    monkeypatch.setattr(startup._ThisProcess, "installed_before_litellm", False)
    assert startup.report_if_skipped({}) is True
    assert "ccq: every LiteLLM route is kept: ccq's start-up did not run before LiteLLM" in capsys.readouterr().err
    assert startup.report_if_skipped({"CCQ_ONLY_SERVED_ROUTES": "0"}) is False


def test_a_proxy_whose_start_up_ran_reports_nothing_more(monkeypatch, capsys) -> None:
    monkeypatch.setattr(startup._ThisProcess, "installed_before_litellm", False)
    monkeypatch.setattr(startup.metadata, "version", lambda name: "1.75.0")
    startup.install({})  # refused by the guard, and said so: still it ran
    capsys.readouterr()
    assert startup.report_if_skipped({}) is False
    assert capsys.readouterr().err == ""
