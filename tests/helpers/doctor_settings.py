"""doctor.json as roles/ccq_doctor writes it, built from where each value is written once.

ccq's defaults (roles/ccq/defaults), its layout (ccq_layout in roles/ccq/vars) under the given
home, the unit name (litellm_service's defaults), the oldest Node.js (claude_code's defaults)
and the command doctor names to provision again (ccq_doctor's defaults): what site.yml hands
the role on a machine with nothing configured, with systemd running the proxy. Tests override
the fields they are about; the health URL and the launcher's litellm command line follow the port.
"""

from __future__ import annotations

import functools
import getpass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def _role_file(path: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "roles" / path).read_text(encoding="utf-8"))


def ccq_layout() -> dict[str, str]:
    """ccq_layout (roles/ccq/vars/main.yml): where ccq keeps things, relative to the home."""
    return dict(_role_file("ccq/vars/main.yml")["ccq_layout"])


def doctor_settings(home: Path, /, **overrides: Any) -> dict[str, Any]:
    """A complete doctor.json for the account running the tests, its home ``home``; ``overrides``
    replace fields (a value of None drops the field)."""
    ccq = _role_file("ccq/defaults/main.yml")
    settings: dict[str, Any] = {
        "user": getpass.getuser(),
        "home": str(home),
        "paths": {name: str(home / relative) for name, relative in ccq_layout().items()},
        "port": ccq["ccq_proxy_port"],
        "model_alias": ccq["ccq_model_alias"],
        "upstream_model": ccq["ccq_cerebras_model"],
        "api_base": ccq["ccq_cerebras_api_base"],
        "model_preference": list(ccq["ccq_cerebras_model_preference"]),
        "service_name": _role_file("litellm_service/defaults/main.yml")["litellm_service_name"],
        "litellm_version": ccq["ccq_litellm_version"],
        "openai_version_spec": ccq["ccq_openai_version_spec"],
        "claude_code_version": ccq["ccq_claude_code_version"],
        "node_min_version": _role_file("claude_code/defaults/main.yml")["claude_code_node_min_version"],
        "reprovision": _role_file("ccq_doctor/defaults/main.yml")["ccq_doctor_reprovision_command"],
        "service_manager": "systemd",
        "claude_code_environment": {},
        "background_model_alias": "",
        "background_model": "",
        # As site.yml passes them: the model table's retired rows.
        "retired_models": {model: row for model, row in ccq["ccq_cerebras_models"].items() if "retired" in row},
    }
    settings.update(overrides)
    # As litellm_service publishes them (its vars litellm_service_health_url and
    # litellm_service_litellm_argv), for the port and paths above.
    paths, port = settings["paths"], settings["port"]
    if "health_url" not in overrides:
        settings["health_url"] = f"http://127.0.0.1:{port}/health/liveliness"
    if "launcher_argv" not in overrides and isinstance(paths, dict):
        settings["launcher_argv"] = [f"{paths['litellm_venv']}/bin/litellm", "--config", paths["proxy_config"],
                                     "--host", "127.0.0.1", "--port", str(port), "--telemetry", "False"]
    return {name: value for name, value in settings.items() if value is not None}
