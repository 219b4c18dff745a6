"""roles/ccq_doctor's vars, rendered by ansible-playbook: doctor.json as the role writes it is
what doctor reads, every field of it (moved here from tests/unit: it runs ansible-playbook)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.doctor_settings import doctor_settings
from helpers.modules import load_doctor
from helpers.stack import served_model

REPO = Path(__file__).resolve().parents[2]
doctor = load_doctor()

BACKGROUND = "qwen-3-coder-480b-background"
# ccq's table of retired models as site.yml hands it over: zai-glm-4.6's replacement was retired in turn.
RETIRED = {"zai-glm-4.6": {"retired": "2026-01-20", "replacement": "zai-glm-4.7"},
           "zai-glm-4.7": {"retired": "2026-10", "replacement": "gpt-oss-120b"},
           "qwen-3-coder-480b": {"retired": "2025-11", "replacement": "gpt-oss-120b"}}


ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


@pytest.mark.skipif(not ANSIBLE_PLAYBOOK.exists(), reason="ansible-playbook is not in this venv")
@pytest.mark.parametrize("background", [True, False])
def test_the_role_writes_the_background_alias_from_the_proxy_models(tmp_path, background):
    """roles/ccq_doctor/vars: doctor.json's background fields come from ccq_doctor_proxy_models;
    how the proxy runs (service manager, health URL, the launcher's litellm command line) is
    passed through as litellm_service published it."""
    role = REPO / "roles/ccq_doctor"
    playbook = tmp_path / "settings.yml"
    playbook.write_text(f"""
- hosts: localhost
  gather_facts: false
  vars_files: [{role / 'defaults/main.yml'}, {role / 'vars/main.yml'}]
  tasks:
    - ansible.builtin.debug:
        msg: "SETTINGS={{{{ ccq_doctor_settings | to_json | b64encode }}}}"
""")
    models = [served_model("qwen-3-coder-480b", "zai-glm-4.7")]
    if background:
        models.append(served_model(BACKGROUND, "gpt-oss-120b", role="background"))
    # The role's other required inputs as site.yml passes them on a machine with nothing
    # configured: ccq_doctor_<field> is the settings' <field>, from its one source.
    yaml = pytest.importorskip("yaml")
    specs = yaml.safe_load((role / "meta/argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    expected = doctor_settings(tmp_path, upstream_model="zai-glm-4.7")
    inputs = {"ccq_doctor_user": expected["user"], "ccq_doctor_user_home": expected["home"], **{
        f"ccq_doctor_{name}": value for name, value in expected.items() if f"ccq_doctor_{name}" in specs}}
    inputs["ccq_doctor_proxy_port"] = expected["port"]
    required = {name: inputs[name] for name, spec in specs.items()
                if spec.get("required") and name not in ("ccq_doctor_proxy_models", "ccq_doctor_retired_models")}
    (tmp_path / "vars.json").write_text(json.dumps({**required, "ccq_doctor_proxy_models": models,
                                                    "ccq_doctor_retired_models": RETIRED}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default")
    done = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local",
                           "-e", f"ansible_python_interpreter={sys.executable}",
                           "-e", f"@{tmp_path / 'vars.json'}", str(playbook)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    encoded = done.stdout.split("SETTINGS=", 1)[1].split('"', 1)[0]
    written = json.loads(base64.b64decode(encoded))
    assert written["background_model_alias"] == (BACKGROUND if background else "")
    assert written["background_model"] == ("gpt-oss-120b" if background else "")
    assert written["retired_models"] == RETIRED
    assert (written["service_manager"], written["health_url"], written["launcher_argv"]) == (
        expected["service_manager"], expected["health_url"], expected["launcher_argv"])
    # What the role writes is what doctor reads: every field, nothing left to a default.
    path = tmp_path / "doctor.json"
    path.write_text(json.dumps(written))
    loaded = doctor.settings.load_settings(path, {"HOME": str(tmp_path)})
    assert loaded.background_model_alias == written["background_model_alias"]
    assert loaded.retired_models == RETIRED
    assert loaded == doctor.settings.settings_from({**expected, "retired_models": RETIRED,
                                           "background_model_alias": written["background_model_alias"],
                                           "background_model": written["background_model"]})
