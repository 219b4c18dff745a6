"""Facts: gathered once, lazily, shared by the checks.

Each side of the machine has its own part, in its own module: service_facts (how the proxy runs,
its environment file and keys), ccq_facts (what ccq hands Claude Code), proxy_facts (config.yaml,
the running proxy over HTTP, Cerebras behind it) and software_facts (LiteLLM's venv, Claude Code,
Node.js). Facts puts them together under the names the checks use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ccq_doctor.ccq_facts import Capture, CcqFacts
from ccq_doctor.gathering import Forwarded
from ccq_doctor.proxy_facts import ProxyConfig, ProxyConfigFacts, ProxyHttpFacts, Upstream, UpstreamFacts
from ccq_doctor.service_facts import SecretFacts, ServiceFacts
from ccq_doctor.settings import Settings
from ccq_doctor.software_facts import SoftwareFacts

# The types of the facts, which the checks name beside Facts.
__all__ = ["Capture", "Facts", "ProxyConfig", "Upstream"]


class Facts:
    """Everything the checks look at.

    Each fact is a gathering.fact of one of the parts below, forwarded under its own name: the
    checks ask ``facts.health`` and need not know which part gathers it. Each part is handed the
    parts whose facts it builds on, so a fact preset or forgotten here is so for every part. The
    methods derive answers from the facts.
    """

    def __init__(self, settings: Settings, environ: Mapping[str, str] = os.environ,
                 proc: Path = Path("/proc")) -> None:
        self.settings = settings
        self.environ = dict(environ)  # one dict for every part: a change to it reaches them all
        self.proc = proc
        self.service_facts = ServiceFacts(settings, self.environ, proc)
        self.secret_facts = SecretFacts(settings)
        self.ccq_facts = CcqFacts(settings, self.environ)
        self.proxy_config_facts = ProxyConfigFacts(settings, self.ccq_facts)
        self.proxy_http_facts = ProxyHttpFacts(settings, self.secret_facts)
        self.upstream_facts = UpstreamFacts(settings, self.service_facts, self.secret_facts, self.proxy_config_facts)
        self.software_facts = SoftwareFacts(settings, self.environ, self.secret_facts, self.proxy_config_facts)

    def preset(self, **facts: Any) -> Facts:
        """Fix facts in advance (tests; or a caller that knows them already)."""
        for name, value in facts.items():
            if not isinstance(getattr(type(self), name, None), Forwarded):
                raise TypeError(f"{name!r} is not a fact ({type(self).__name__} forwards none of that name)")
            setattr(self, name, value)
        return self

    # -- how the proxy runs ----------------------------------------------------------------
    manager = Forwarded("service_facts", ServiceFacts.manager)
    launcher = Forwarded("service_facts", ServiceFacts.launcher)
    service = Forwarded("service_facts", ServiceFacts.service)
    proxy_process = Forwarded("service_facts", ServiceFacts.proxy_process)
    proxy_listeners = Forwarded("service_facts", ServiceFacts.proxy_listeners)
    listeners = Forwarded("service_facts", ServiceFacts.listeners)
    journal = Forwarded("service_facts", ServiceFacts.journal)
    log_tail = Forwarded("service_facts", ServiceFacts.log_tail)
    service_environment = Forwarded("service_facts", ServiceFacts.service_environment)

    def launcher_as_provisioned(self) -> bool:
        return self.service_facts.launcher_as_provisioned()

    # -- secrets (memory only) -----------------------------------------------------------
    env_file = Forwarded("secret_facts", SecretFacts.env_file)
    master_key = Forwarded("secret_facts", SecretFacts.master_key)
    api_key = Forwarded("secret_facts", SecretFacts.api_key)

    def secrets(self) -> list[str]:
        return self.secret_facts.secrets()

    # -- what ccq does --------------------------------------------------------------------
    capture = Forwarded("ccq_facts", CcqFacts.capture)
    capture_direct = Forwarded("ccq_facts", CcqFacts.capture_direct)

    def usable_capture(self) -> Capture:
        return self.ccq_facts.usable_capture()

    def ccq_port(self) -> int:
        return self.ccq_facts.ccq_port()

    def ccq_alias(self) -> str:
        return self.ccq_facts.ccq_alias()

    # -- config.yaml -----------------------------------------------------------------------
    proxy_config = Forwarded("proxy_config_facts", ProxyConfigFacts.proxy_config)
    callback_classes = Forwarded("proxy_config_facts", ProxyConfigFacts.callback_classes)

    def upstream_model(self) -> str:
        return self.proxy_config_facts.upstream_model()

    def background_alias(self) -> str:
        return self.proxy_config_facts.background_alias()

    def background_upstream_model(self) -> str:
        return self.proxy_config_facts.background_upstream_model()

    def api_base(self) -> str:
        return self.proxy_config_facts.api_base()

    # -- the proxy over HTTP ----------------------------------------------------------------
    health = Forwarded("proxy_http_facts", ProxyHttpFacts.health)
    proxy_models = Forwarded("proxy_http_facts", ProxyHttpFacts.proxy_models)
    readiness = Forwarded("proxy_http_facts", ProxyHttpFacts.readiness)

    def proxy_url(self, path: str) -> str:
        return self.proxy_http_facts.proxy_url(path)

    def provisioned_port(self) -> int | None:
        return self.proxy_http_facts.provisioned_port()

    def loaded_callbacks(self) -> list[str] | None:
        return self.proxy_http_facts.loaded_callbacks()

    # -- Cerebras ----------------------------------------------------------------------------
    upstream = Forwarded("upstream_facts", UpstreamFacts.upstream)

    def service_proxies(self) -> dict[str, str]:
        return self.upstream_facts.service_proxies()

    # -- what is installed -------------------------------------------------------------------
    versions = Forwarded("software_facts", SoftwareFacts.versions)
    callback_import = Forwarded("software_facts", SoftwareFacts.callback_import)
    claude_version = Forwarded("software_facts", SoftwareFacts.claude_version)
    node_version = Forwarded("software_facts", SoftwareFacts.node_version)

    def start_callback_probe(self) -> None:
        self.software_facts.start_callback_probe()
