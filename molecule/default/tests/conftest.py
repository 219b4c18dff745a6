"""Helpers for verifying a converged ccq target with testinfra.

Requests to the proxy are made from inside the target by a small Python client that reads
the master key from its 0600 file itself, so no key ever appears on a command line.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import sys
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

USER = "alice"
HOME = f"/home/{USER}"
PROXY_PORT = 14000
PROXY_URL = f"http://127.0.0.1:{PROXY_PORT}"
MODEL_ALIAS = "cerebras"
UPSTREAM_LOG = "/var/log/fake-cerebras/requests.jsonl"
# The fake Cerebras service of molecule.yml (fake_cerebras_port); the target shares the
# host's network, so its scripted-response queue is reachable from here too.
FAKE_URL = "http://127.0.0.1:18400"
MASTER_KEY_FILE = f"{HOME}/.secrets/ccq_litellm_master_key"
API_KEY_FILE = f"{HOME}/.secrets/cerebras_api_key"
SENTINEL_KEY = "csk-sentinel-molecule-0000-not-a-real-key"
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))

# Shared with the host-side tests (tests/helpers): the Anthropic stream reader and the way a
# playbook is run; re-exported for the test modules.
sys.path.insert(0, str(PROJECT / "tests"))
from helpers.http import assemble_stream  # noqa: E402,F401
from helpers.playbook import play_output, run_playbook  # noqa: E402,F401

# Runs inside the target: POST a body to the proxy with the chosen bearer, print
# {"status": ..., "body": ..., "headers": {...}} as JSON.
_CLIENT = textwrap.dedent(
    """
    import json, sys, urllib.request, urllib.error
    url, bearer_mode, body = sys.argv[1], sys.argv[2], sys.stdin.read()
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    if bearer_mode == "master":
        headers["authorization"] = "Bearer " + open(%r).read().strip()
    elif bearer_mode == "wrong":
        headers["authorization"] = "Bearer sk-wrong-key"
    req = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            status, raw, got = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as err:
        status, raw, got = err.code, err.read(), err.headers
    print(json.dumps({"status": status, "body": raw.decode(),
                      "headers": {k.lower(): v for k, v in got.items()}}))
    """
    % MASTER_KEY_FILE
)


def as_user(command: str, login_shell: bool = False) -> str:
    """``command`` run by the provisioned user (testinfra's podman backend runs as root).

    ``login_shell`` gives an interactive login bash, as a user opening a terminal gets, with
    the rc files and therefore the cc/ccq functions loaded.
    """
    if login_shell:
        return f"sudo -iu {USER} -- bash -lic {shlex.quote(command)}"
    return (f"sudo -u {USER} -H -- env XDG_RUNTIME_DIR=/run/user/1000 "
            f"bash -c {shlex.quote(command)}")


def changed_tasks(output: str) -> set[str]:
    """Names of the tasks (and handlers) that reported a change in a playbook run's output."""
    names, current = set(), None
    for line in output.splitlines():
        task = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.+?)\]", line)
        if task:
            current = task.group(1)
        elif line.startswith("changed:") and current:
            names.add(current)
    return names


def service_pid(host: Any) -> str:
    """The proxy service's MainPID ("0" while it is not running)."""
    return host.run(as_user("systemctl --user show -p MainPID --value ccq-litellm.service")).stdout.strip()


def post(host: Any, path: str, body: dict[str, Any], bearer: str = "master") -> dict[str, Any]:
    """POST ``body`` to the proxy from inside the target as the provisioned user."""
    script = base64.b64encode(_CLIENT.encode()).decode()
    payload = base64.b64encode(json.dumps(body).encode()).decode()
    cmd = (
        f"echo {payload} | base64 -d | "
        f"python3 -c \"import base64,sys; exec(base64.b64decode('{script}'))\" {PROXY_URL}{path} {bearer}"
    )
    result = host.run(as_user(cmd))
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


def upstream_requests(host: Any) -> list[dict[str, Any]]:
    """Every request the fake Cerebras received, oldest first."""
    content = host.run(f"cat {UPSTREAM_LOG}").stdout
    return [json.loads(line) for line in content.splitlines() if line.strip()]


@pytest.fixture()
def upstream_mark(host: Any) -> int:
    """How many upstream requests happened before the test."""
    return len(upstream_requests(host))


@cache
def pins() -> dict[str, Any]:
    """The project's inputs and pins, from their one source (roles/ccq/defaults/main.yml)."""
    return yaml.safe_load((PROJECT / "roles/ccq/defaults/main.yml").read_text())


