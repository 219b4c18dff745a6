"""Doctor's probes against the real pinned LiteLLM with ccq's callback (integration).

The fault-injection tests elsewhere use stand-ins; these prove the assumptions doctor makes
about LiteLLM 1.74.0.post2 itself: /v1/models answers 401 to anything but the master key (so
a rotated key shows), lists the config's model_names, and ccq's callback imports in the venv.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers.doctor_settings import doctor_settings
from helpers.modules import load_doctor

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


doctor = load_doctor()


def facts_for(proxy_stack, litellm_venv: Path, tmp_path: Path, master_key: str):
    """Doctor's facts for the suite's running proxy; ccq's shell side is taken as correct."""
    workdir = proxy_stack.proxy.workdir
    home = tmp_path / "home"
    defaults = doctor_settings(home)
    paths = {**defaults["paths"], "config_dir": str(workdir), "proxy_config": str(workdir / "config.yaml"),
             "proxy_callbacks": str(workdir / "custom_callbacks.py"), "litellm_venv": str(litellm_venv)}
    settings = doctor.settings.settings_from(doctor_settings(home, paths=paths, port=int(proxy_stack.proxy.port),
                                                    model_alias="qwen-3-coder-480b", service_manager="none"))
    settings.paths["master_key_file"].parent.mkdir(parents=True)
    settings.paths["master_key_file"].write_text(master_key)
    capture = doctor.facts.Capture(True, "test", env={}, argv=["--model", "qwen-3-coder-480b"],
                             token_fingerprint=doctor.parsing.fingerprint(master_key))
    return doctor.facts.Facts(settings).preset(capture=capture, capture_direct=capture, env_file={})


def verdict(check_id, facts):
    return next(c for c in doctor.checks.CHECKS if c.id == check_id).run(facts)


def test_the_master_key_is_accepted_and_the_alias_is_listed(proxy_stack, litellm_venv, tmp_path):
    facts = facts_for(proxy_stack, litellm_venv, tmp_path, proxy_stack.token)
    assert verdict("auth", facts).status == doctor.findings.OK
    alias = verdict("alias", facts)
    assert alias.status == doctor.findings.OK and "running proxy" in alias.message


def test_a_key_the_running_proxy_does_not_hold_is_a_401(proxy_stack, litellm_venv, tmp_path):
    facts = facts_for(proxy_stack, litellm_venv, tmp_path, "sk-ccq-rotated-" + "0" * 16)
    finding = verdict("auth", facts)
    assert finding.status == doctor.findings.FAIL and finding.message.startswith("401 Unauthorized")


def test_ccqs_callback_imports_in_the_pinned_venv_and_versions_match(proxy_stack, litellm_venv, tmp_path):
    facts = facts_for(proxy_stack, litellm_venv, tmp_path, proxy_stack.token)
    assert verdict("callback", facts).status == doctor.findings.OK
    assert verdict("versions", facts).status == doctor.findings.OK


def test_a_callback_that_fails_in_the_venv_is_caught(proxy_stack, litellm_venv, tmp_path):
    facts = facts_for(proxy_stack, litellm_venv, tmp_path, proxy_stack.token)
    broken = tmp_path / "broken"
    shutil.copytree(proxy_stack.proxy.workdir, broken, ignore=shutil.ignore_patterns("*.log", "__pycache__"))
    (broken / "custom_callbacks.py").write_text("from openai.types.responses import NoSuchThing\n")
    facts.settings.paths.update(config_dir=broken, proxy_config=broken / "config.yaml",
                                proxy_callbacks=broken / "custom_callbacks.py")
    finding = verdict("callback", facts)
    assert finding.status == doctor.findings.FAIL and "NoSuchThing" in finding.message
