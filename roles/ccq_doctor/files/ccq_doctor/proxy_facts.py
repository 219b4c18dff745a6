"""The proxy side of doctor's facts: config.yaml, the running proxy over HTTP, and Cerebras behind it."""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccq_doctor.ccq_facts import CcqFacts
from ccq_doctor.gathering import fact
from ccq_doctor.machine import HttpResult, http_get, read_text, run
from ccq_doctor.parsing import CALLBACK_SETTING
from ccq_doctor.service_facts import SecretFacts, ServiceFacts
from ccq_doctor.settings import Settings


@dataclass
class ProxyConfig:
    """What doctor needs from LiteLLM's config.yaml."""

    models: dict[str, dict[str, str]] = field(default_factory=dict)  # model_name -> litellm_params
    callbacks: list[str] = field(default_factory=list)

    def upstream_model(self, alias: str) -> str:
        """The model id at the provider for ``alias`` ("cerebras/x" -> "x")."""
        model = self.models.get(alias, {}).get("model", "")
        return model.split("/", 1)[1] if "/" in model else model

    @classmethod
    def provisioned(cls, settings: Settings) -> ProxyConfig:
        """What roles/litellm_proxy wrote into config.yaml, from doctor.json: for when LiteLLM's
        venv cannot read the file (the versions check names that venv's fault)."""
        config = cls(callbacks=[CALLBACK_SETTING])
        for alias, model in ((settings.model_alias, settings.upstream_model),
                             (settings.background_model_alias, settings.background_model)):
            if alias:
                config.models[alias] = {"model": f"cerebras/{model}", "api_base": settings.api_base}
        return config


# The litellm_params doctor reads.
MODEL_PARAMS_READ = ("model", "api_base", "api_key")


def proxy_config_from_data(data: Any) -> ProxyConfig:
    """ProxyConfig from config.yaml already parsed into Python data (by LiteLLM's own YAML parser)."""
    config = ProxyConfig()
    if not isinstance(data, dict):
        return config
    for entry in data.get("model_list") or []:
        if isinstance(entry, dict) and entry.get("model_name") is not None:
            params = entry.get("litellm_params") or {}
            config.models[str(entry["model_name"])] = {k: str(v) for k, v in params.items()
                                                       if k in MODEL_PARAMS_READ}
    callbacks = (data.get("litellm_settings") or {}).get("callbacks")
    if isinstance(callbacks, str):
        config.callbacks = [callbacks]
    elif isinstance(callbacks, list):
        config.callbacks = [str(c) for c in callbacks]
    return config


@dataclass
class Upstream:
    """What GET {api_base}/models answered."""

    url: str
    result: HttpResult
    served: list[str] = field(default_factory=list)


class ProxyConfigFacts:
    """config.yaml, and what it makes of the aliases ccq uses: models, endpoint, callbacks."""

    def __init__(self, settings: Settings, ccq: CcqFacts) -> None:
        self.settings = settings
        self.ccq = ccq

    @fact
    def proxy_config(self) -> ProxyConfig | None:
        """config.yaml as LiteLLM itself reads it: its venv's YAML parser hands it over as JSON.
        None when the file is missing; what doctor.json says the role wrote when the venv cannot
        read it."""
        path = self.settings.paths["proxy_config"]
        if not path.exists():
            return None
        python = self.settings.paths["litellm_venv"] / "bin" / "python"
        if python.exists():
            done = run([str(python), "-c", "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
                        str(path)], timeout=30)
            if done.returncode == 0:
                try:
                    return proxy_config_from_data(json.loads(done.stdout))
                except ValueError:
                    pass
        return ProxyConfig.provisioned(self.settings)

    @fact
    def callback_classes(self) -> dict[str, str]:
        """For each configured ``custom_callbacks.<name>``: the class the file instantiates as <name>."""
        config = self.proxy_config
        source = read_text(self.settings.paths["proxy_callbacks"]) or ""
        classes = {}
        for setting in (config.callbacks if config else []):
            module, _, name = setting.partition(".")
            if module != "custom_callbacks":
                continue
            match = re.search(rf"(?m)^{re.escape(name)}\s*=\s*([A-Za-z_]\w*)\(", source)
            classes[setting] = match.group(1) if match else ""
        return classes

    def upstream_model(self) -> str:
        config = self.proxy_config
        return (config.upstream_model(self.ccq.ccq_alias()) if config else "") or self.settings.upstream_model

    def background_alias(self) -> str:
        """The alias of Claude Code's background calls when ccq_background_model is set, else ""."""
        alias = self.settings.background_model_alias
        return alias if alias and alias != self.ccq.ccq_alias() else ""

    def background_upstream_model(self) -> str:
        alias = self.background_alias()
        if not alias:
            return ""
        config = self.proxy_config
        return (config.upstream_model(alias) if config else "") or self.settings.background_model

    def api_base(self) -> str:
        config = self.proxy_config
        base = config.models.get(self.ccq.ccq_alias(), {}).get("api_base", "") if config else ""
        return (base or self.settings.api_base).rstrip("/")


class ProxyHttpFacts:
    """What the running proxy answers over HTTP, at doctor.json's health URL (the launcher's)."""

    def __init__(self, settings: Settings, secrets: SecretFacts) -> None:
        self.settings = settings
        self.secrets = secrets

    def proxy_url(self, path: str) -> str:
        """``path`` at the proxy: where doctor.json's health URL (the launcher's) points."""
        parts = urllib.parse.urlsplit(self.settings.health_url)
        return f"{parts.scheme}://{parts.netloc}{path}"

    def provisioned_port(self) -> int | None:
        """The port of doctor.json's health URL: where the provisioning runs the proxy."""
        try:
            return urllib.parse.urlsplit(self.settings.health_url).port
        except ValueError:
            return None

    @fact
    def health(self) -> HttpResult:
        return http_get(self.settings.health_url, timeout=3)

    @fact
    def proxy_models(self) -> HttpResult:
        key = self.secrets.master_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return http_get(self.proxy_url("/v1/models"), headers=headers, timeout=10)

    @fact
    def readiness(self) -> HttpResult:
        """LiteLLM's /health/readiness: its version and the callbacks it actually loaded."""
        key = self.secrets.master_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return http_get(self.proxy_url("/health/readiness"), headers=headers, timeout=10)

    def loaded_callbacks(self) -> list[str] | None:
        """Class names of the callbacks the running proxy loaded; None when it cannot be asked."""
        if not self.health.ok:
            return None
        data = self.readiness.json() if self.readiness.ok else None
        if not isinstance(data, dict) or not isinstance(data.get("success_callbacks"), list):
            return None
        return [str(name) for name in data["success_callbacks"]]


class UpstreamFacts:
    """What Cerebras answers the proxy's key, asked the way the running proxy would reach it."""

    def __init__(self, settings: Settings, service: ServiceFacts, secrets: SecretFacts,
                 config: ProxyConfigFacts) -> None:
        self.settings = settings
        self.service = service
        self.secrets = secrets
        self.config = config

    @fact
    def upstream(self) -> Upstream:
        env_file = self.secrets.env_file or {}
        cafile = env_file.get("SSL_CERT_FILE") or env_file.get("REQUESTS_CA_BUNDLE") or None
        proxies = self.service_proxies()
        url = self.config.api_base() + "/models"
        key = self.secrets.api_key
        result = http_get(url, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=15,
                          cafile=cafile if cafile and Path(cafile).exists() else None, proxies=proxies)
        served: list[str] = []
        data = result.json() if result.ok else None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            served = [str(m.get("id")) for m in data["data"] if isinstance(m, dict) and m.get("id")]
        return Upstream(url, result, served)

    def service_proxies(self) -> dict[str, str]:
        """The HTTP(S) proxies the running proxy uses to reach Cerebras."""
        merged = {**self.service.service_environment, **(self.secrets.env_file or {})}
        proxies = {}
        for scheme in ("https", "http"):
            value = merged.get(f"{scheme.upper()}_PROXY") or merged.get(f"{scheme}_proxy") \
                or merged.get("ALL_PROXY") or merged.get("all_proxy")
            if value:
                proxies[scheme] = value
        return proxies
