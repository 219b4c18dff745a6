"""The host a verify run checks, the settings it was converged with, and how to act on it as
the provisioned account (tests/converged_host, molecule/*/tests).

Two kinds of run, one set of checks:

- Molecule: testinfra's podman backend runs every command as root inside the target, so a
  command for the account goes through sudo. The settings are the scenario inventory's
  (MOLECULE_INVENTORY_FILE); the account's home is the one molecule/shared/prepare.yml makes.
- This machine (tests/platforms/converge_and_verify.sh, the macOS CI job): testinfra's
  local:// backend runs as the account itself. The settings are the extra-vars file the
  converge was given (CCQ_VERIFY_SETTINGS); the fake upstream's request log is
  CCQ_VERIFY_UPSTREAM_LOG.

ccq's defaults (roles/ccq/defaults/main.yml) fill in what neither sets; paths are the role's
layout (ccq_layout in roles/ccq/vars/main.yml).
"""

from __future__ import annotations

import base64
import functools
import getpass
import json
import os
import platform
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import yaml
from testinfra.utils.ansible_runner import AnsibleRunner

from .playbook import CCQ_DEFAULTS, CCQ_VARS, REPO

SETTINGS_ENV = "CCQ_VERIFY_SETTINGS"
UPSTREAM_LOG_ENV = "CCQ_VERIFY_UPSTREAM_LOG"
# Where molecule/shared/prepare.yml's fake Cerebras service logs the requests it receives.
MOLECULE_UPSTREAM_LOG = "/var/log/fake-cerebras/requests.jsonl"


@dataclass(frozen=True)
class ConvergedHost:
    """A converged host as the verify checks see it."""

    settings: dict[str, Any]  # the ccq_* variables it was converged with, defaults included
    account: str
    home: str
    upstream_log: str
    # Molecule's podman backend runs as root: commands for the account go through sudo.
    verifier_is_root: bool
    login_shell: str
    # The inventory's name of the host (Molecule's podman container), "" for this machine.
    name: str = ""

    @property
    def proxy_port(self) -> int:
        return int(self.settings["ccq_proxy_port"])

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def model_alias(self) -> str:
        return str(self.settings["ccq_model_alias"])

    @property
    def service_name(self) -> str:
        """The systemd unit's name (without .service) and the launchd agent's label."""
        return str(self.settings["litellm_service_name"])

    @property
    def fake_queue_url(self) -> str:
        """The fake Cerebras' scripted-response queue (tests/fake_cerebras), reachable from the
        verifier: the Molecule target shares the controller's network."""
        return urljoin(self.settings["ccq_cerebras_api_base"], "/_fake/queue")

    # Where the account's pipx keeps its venvs is pipx's to say (roles/ccq/tasks/pipx.yml): these
    # paths are read from what the play wrote into doctor's settings, not from the layout.
    PIPX_PATHS = ("litellm_venv", "pipx_home")

    def path(self, name: str) -> str:
        """``name`` of ccq_layout (roles/ccq/vars/main.yml) in the account's home, or, for the
        venv pipx made, the path the play computed (doctor.json's ``paths``)."""
        if name in self.PIPX_PATHS:
            return _computed_paths(self)[name]
        return f"{self.home}/{self.settings['ccq_layout'][name]}"


def _computed_paths(target: ConvergedHost) -> dict[str, str]:
    """The ``paths`` the play wrote into doctor's settings on the converged host."""
    return _read_paths(f"podman://{target.name}" if target.verifier_is_root else "local://",
                       target.path("doctor_config"))


@functools.cache
def _read_paths(backend: str, doctor_config: str) -> dict[str, str]:
    import testinfra

    return json.loads(testinfra.get_host(backend).file(doctor_config).content_string)["paths"]


@functools.cache
def converged_host() -> ConvergedHost:
    """The host this run verifies; one clear error when the run names none."""
    defaults = yaml.safe_load(CCQ_DEFAULTS.read_text())
    defaults["ccq_layout"] = yaml.safe_load(CCQ_VARS.read_text())["ccq_layout"]
    service_defaults = yaml.safe_load((REPO / "roles/litellm_service/defaults/main.yml").read_text())
    defaults["litellm_service_name"] = service_defaults["litellm_service_name"]
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if inventory:
        # The inventory directory, as ansible-playbook reads it: group_vars sit beside the file.
        runner = AnsibleRunner(str(Path(inventory).parent))
        [name] = runner.get_hosts("all")  # one platform per scenario
        given = runner.get_variables(name)
        account = given.get("ccq_user") or given["ansible_user"]
        # The home molecule/shared/prepare.yml's user task makes for the account.
        return ConvergedHost({**defaults, **given}, account, f"/home/{account}",
                             MOLECULE_UPSTREAM_LOG, verifier_is_root=True, login_shell="bash", name=name)
    settings_file, upstream_log = os.environ.get(SETTINGS_ENV), os.environ.get(UPSTREAM_LOG_ENV)
    if not (settings_file and upstream_log):
        raise RuntimeError("no converged host to verify: run `make molecule`, or "
                           f"tests/platforms/converge_and_verify.sh (it sets {SETTINGS_ENV} and {UPSTREAM_LOG_ENV})")
    given = yaml.safe_load(Path(settings_file).read_text()) or {}
    # A person opening a terminal gets zsh on macOS, bash elsewhere.
    shell = "zsh" if platform.system() == "Darwin" else "bash"
    return ConvergedHost({**defaults, **given}, given.get("ccq_user") or getpass.getuser(),
                         str(Path.home()), upstream_log, verifier_is_root=False, login_shell=shell)


def as_user(command: str, login_shell: bool = False) -> str:
    """``command`` as the provisioned account would run it.

    ``login_shell`` gives an interactive login shell, as a user opening a terminal gets, with
    the rc files and therefore the cc/ccq functions loaded.
    """
    target = converged_host()
    shell = f"{target.login_shell} -lic {shlex.quote(command)}" if login_shell else f"bash -c {shlex.quote(command)}"
    if not target.verifier_is_root:
        return shell
    if login_shell:
        return f"sudo -iu {target.account} -- {shell}"
    # systemctl --user needs the account's runtime directory, which sudo does not set.
    return f"sudo -u {target.account} -H -- env XDG_RUNTIME_DIR=/run/user/$(id -u {target.account}) {shell}"


# Runs on the target as the account: POST the body (argv[3], base64 JSON) to argv[1] with the
# bearer argv[2] names and print {"status", "body", "headers"} as JSON. The master key is read
# from its 0600 file here, so it never reaches a command line.
_CLIENT = textwrap.dedent(
    """
    import base64, json, sys, urllib.request, urllib.error
    url, bearer_mode, body = sys.argv[1], sys.argv[2], base64.b64decode(sys.argv[3])
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    if bearer_mode == "master":
        headers["authorization"] = "Bearer " + open(%r).read().strip()
    elif bearer_mode == "wrong":
        headers["authorization"] = "Bearer sk-wrong-key"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    # Loopback: never through an HTTP proxy the environment names.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=120) as resp:
            status, raw, got = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as err:
        status, raw, got = err.code, err.read(), err.headers
    print(json.dumps({"status": status, "body": raw.decode(),
                      "headers": {k.lower(): v for k, v in got.items()}}))
    """
)


def post(host: Any, path: str, body: dict[str, Any], bearer: str = "master") -> dict[str, Any]:
    """POST ``body`` to the proxy from the target as the account; ``bearer``: master, wrong or none."""
    target = converged_host()
    script = base64.b64encode((_CLIENT % target.path("master_key_file")).encode()).decode()
    payload = base64.b64encode(json.dumps(body).encode()).decode()
    result = host.run(as_user(f"python3 -c \"import base64; exec(base64.b64decode('{script}'))\" "
                              f"{target.proxy_url}{path} {bearer} {payload}"))
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


def upstream_requests(host: Any) -> list[dict[str, Any]]:
    """Every request the fake Cerebras received, oldest first."""
    content = host.run(f"cat {converged_host().upstream_log}").stdout
    return [json.loads(line) for line in content.splitlines() if line.strip()]


def proxy_answers(host: Any) -> bool:
    """Whether the proxy answers its liveliness probe now."""
    return host.run(f"curl -fsS --noproxy '*' -o /dev/null --max-time 5 "
                    f"{converged_host().proxy_url}/health/liveliness").rc == 0


def service_pid(host: Any) -> str:
    """The systemd service's MainPID ("0" while it is not running)."""
    unit = converged_host().service_name + ".service"
    return host.run(as_user(f"systemctl --user show -p MainPID --value {unit}")).stdout.strip()
