"""doctor.json: what the provisioning intended (ports, names, versions, file locations, how the
proxy runs), as roles/ccq_doctor writes it. Doctor has no defaults of its own: without that file,
or with a field missing from it, it says so in one line and stops."""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

# Where doctor.json is (ccq_layout's doctor_config), relative to the account's home: the ccq
# shell function runs doctor without --config, and the location of the settings cannot come
# from the settings. Every other path comes from doctor.json.
DEFAULT_SETTINGS_FILE = ".config/ccq/doctor.json"
# The entries of doctor.json's paths (ccq_layout) this script reads.
PATHS_READ = ("secrets_dir", "api_key_file", "master_key_file", "config_dir", "proxy_config", "proxy_callbacks",
              "proxy_env_file", "shell_functions", "state_dir", "proxy_log", "proxy_pidfile", "proxy_launcher",
              "quota_state", "bin_dir", "litellm_venv", "unit_dir", "launchd_log")
# What runs the proxy, as roles/litellm_service decided it for this host (doctor.json's service_manager).
SERVICE_MANAGER_NAMES = ("systemd", "launchd", "none")


@dataclass
class Settings:
    """What the provisioning intended: ports, names, versions, file locations and how the proxy runs."""

    # Without a default: doctor.json must hold them (roles/ccq_doctor writes every one).
    home: Path
    user: str
    paths: dict[str, Path]
    port: int
    model_alias: str
    api_base: str
    model_preference: list[str]
    service_name: str
    litellm_version: str
    openai_version_spec: str
    node_min_version: str
    reprovision: str
    # How the proxy runs, as roles/litellm_service set it up: its service manager (one of
    # SERVICE_MANAGER_NAMES), the URL its launcher asks whether it is healthy, and the litellm
    # command line the launcher runs.
    service_manager: str
    health_url: str
    launcher_argv: list[str]
    # The rest may be empty, which means what each comment says.
    # Empty: read from the proxy's config.yaml.
    upstream_model: str = ""
    # Empty: not compared.
    claude_code_version: str = ""
    # What ccq tells Claude Code about the model (variable: value), from the model table.
    claude_code_environment: dict[str, str] = field(default_factory=dict)
    # The alias of Claude Code's background (haiku-class) calls and its Cerebras model, when
    # ccq_background_model is set; "" when the main alias answers them too.
    background_model_alias: str = ""
    background_model: str = ""
    # Models Cerebras no longer serves: {model: {"retired": date, "replacement": model}}.
    retired_models: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def unit_path(self) -> Path:
        return self.paths["unit_dir"] / f"{self.service_name}.service"

    @property
    def unit(self) -> str:
        return f"{self.service_name}.service"


class SettingsError(Exception):
    """doctor.json is missing, unreadable or incomplete: the one line that says so and what to do."""


# The command named when doctor.json cannot name it (its reprovision field, from
# ccq_doctor_reprovision_command): the README's, as help text; it is no setting doctor acts on.
REPROVISION_HINT = "make provision"


def required_settings() -> list[str]:
    """The Settings fields without a default, in their order: the ones doctor.json must hold."""
    return [f.name for f in fields(Settings) if f.default is MISSING and f.default_factory is MISSING]


def settings_from(data: Mapping[str, Any]) -> Settings:
    """Settings from doctor.json's content; SettingsError names the first field it lacks."""
    lacking = [name for name in required_settings() if data.get(name) in (None, "")]
    if not lacking:
        paths = data["paths"] if isinstance(data["paths"], dict) else {}
        lacking = [f"paths.{name}" for name in PATHS_READ if not paths.get(name)]
    if lacking:
        raise SettingsError(f"lacks {lacking[0]}")
    known = {f.name for f in fields(Settings)}
    values = {name: value for name, value in data.items() if name in known and value is not None}
    try:
        values["port"] = int(values["port"])
    except (TypeError, ValueError):
        raise SettingsError(f"has a port that is not a number ({values['port']!r})") from None
    values["home"] = Path(values["home"])
    values["paths"] = {name: Path(value) for name, value in values["paths"].items()}
    if values["service_manager"] not in SERVICE_MANAGER_NAMES:
        raise SettingsError(f"has a service_manager doctor does not know ({values['service_manager']!r}; "
                            f"it knows {', '.join(SERVICE_MANAGER_NAMES)})")
    if not isinstance(values["launcher_argv"], list):
        raise SettingsError(f"has a launcher_argv that is not a list ({values['launcher_argv']!r})")
    values["launcher_argv"] = [str(arg) for arg in values["launcher_argv"]]
    values["claude_code_environment"] = {str(k): str(v)
                                         for k, v in (values.get("claude_code_environment") or {}).items()}
    for name in ("background_model_alias", "background_model"):
        values[name] = str(values.get(name, ""))
    retired = values.get("retired_models")
    values["retired_models"] = {str(model): {k: str(v) for k, v in row.items() if v is not None}
                                for model, row in (retired.items() if isinstance(retired, dict) else ())
                                if isinstance(row, dict)}
    return Settings(**values)


def load_settings(path: Path | None, environ: Mapping[str, str] = os.environ) -> Settings:
    """Settings from doctor.json (written by roles/ccq_doctor); SettingsError when it is missing,
    unreadable or lacks a field, with the fix."""
    home = Path(environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir)
    settings_file = path or home / DEFAULT_SETTINGS_FILE
    data: Any = None
    try:
        data = json.loads(settings_file.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise SettingsError("is not a JSON object")
        return settings_from(data)
    except SettingsError as exc:
        problem = str(exc)
    except FileNotFoundError:
        problem = "is missing"
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or exc})"
    except ValueError as exc:
        problem = f"is not valid JSON ({exc})"
    command = data.get("reprovision") if isinstance(data, dict) else None
    raise SettingsError(f"{settings_file} {problem}: re-run the provisioning "
                        f"({command if isinstance(command, str) and command else REPROVISION_HINT}), which writes it")

