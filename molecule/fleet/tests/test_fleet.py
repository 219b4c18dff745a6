"""One inventory, three laptops (issue 15): the team's vaulted key and per-host settings reach
every healthy host, a host with a wrong account stops alone with its reason, a second run
changes nothing, doctor reports every host, and ccq works for each person in their own shell.

The tests run in file order on one converge (conftest.converged)."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from fleet_support import BROKEN, HEALTHY, PIPX, host_vars, recap, summary, tail_from, target, team_play, vault_key
from helpers.playbook import changed_tasks
from scripts.locks import read_pins

TOOL_PROMPT = "Use a subagent to say pong"


def as_person(name: str, command: str) -> str:
    """``command`` in a new interactive shell of the host's person, as they open a terminal:
    their own login shell (bash or zsh) reads their rc file, which loads cc and ccq."""
    user, shell = host_vars(name)["ccq_user"], host_vars(name)["fleet_login_shell"]
    return f"sudo -iu {user} -- {shell} -ic {shlex.quote(command)}"


def test_one_run_provisions_the_healthy_laptops_and_stops_the_broken_one_alone(converged):
    result, _ = converged
    assert result.returncode != 0, "a failed host must fail the run"
    counts = recap(result.stdout)
    assert set(counts) == {*HEALTHY, BROKEN}, result.stdout[-3000:]
    for name in HEALTHY:
        assert counts[name]["failed"] == 0 and counts[name]["unreachable"] == 0, tail_from(result.stdout, "PLAY RECAP")
    assert counts[BROKEN]["failed"] == 1
    # The broken host stopped in validation: nothing was installed there.
    assert counts[BROKEN]["changed"] == 0
    lines = summary(result.stdout)
    assert lines == {
        "fleet-debian12": "ready",
        "fleet-debian13": "ready",
        BROKEN: lines[BROKEN],
    }, tail_from(result.stdout, "PLAY RECAP")
    assert re.fullmatch(r"FAILED: .*User 'dave' does not exist on fleet-broken: create it or set ccq_user .*",
                        lines[BROKEN]), lines[BROKEN]


@pytest.mark.parametrize("name", HEALTHY)
def test_the_vaulted_team_key_reached_the_person_in_a_0600_file(converged, name):
    user = host_vars(name)["ccq_user"]
    key_file = target(name).file(f"/home/{user}/.secrets/cerebras_api_key")
    assert key_file.user == user and key_file.mode == 0o600
    assert key_file.content_string.strip() == vault_key()


@pytest.mark.parametrize("name", HEALTHY)
def test_each_laptop_keeps_its_own_port_and_shell(converged, name):
    host, settings = target(name), host_vars(name)
    user, port = settings["ccq_user"], settings["ccq_proxy_port"]
    launcher = host.file(f"/home/{user}/.local/share/ccq/ccq-proxy").content_string
    assert f"--host 127.0.0.1 --port {port}" in launcher
    assert host.run(f"curl -fsS http://127.0.0.1:{port}/health/liveliness").rc == 0
    rc_file = ".zshrc" if settings["fleet_login_shell"].endswith("zsh") else ".bashrc"
    assert "ccq" in host.file(f"/home/{user}/{rc_file}").content_string
    assert host.user(user).shell == settings["fleet_login_shell"]


def as_user(name: str, command: str) -> str:
    """``command`` as the host's person, without their rc files (their PATH has ~/.local/bin)."""
    return f"sudo -iu {host_vars(name)['ccq_user']} -- sh -c {shlex.quote(command)}"


# The distribution's own pipx, with its own default home: Debian 12's 1.1.0 keeps its venvs in
# ~/.local/pipx, Debian 13's 1.7.1 in ~/.local/share/pipx (issue 23).
@pytest.mark.parametrize("name", HEALTHY)
def test_pipx_is_the_installer_of_record_for_litellm(converged, name):
    host, (version, venvs), pins = target(name), PIPX[name], read_pins()
    assert host.run(as_user(name, "pipx --version")).stdout.strip() == version
    listed = host.run(as_user(name, "pipx list"))
    print(f"{name}: pipx list\n{listed.stdout}")
    assert listed.rc == 0 and f"package litellm {pins.litellm_version}," in listed.stdout, listed.stdout
    openai = host.run(as_user(name, "pipx runpip litellm show openai"))
    shown = dict(line.split(": ", 1) for line in openai.stdout.splitlines() if ": " in line)
    print(f"{name}: pipx runpip litellm show openai: {shown.get('Version')}")
    assert shown.get("Version", "").startswith("1.99."), openai.stdout + openai.stderr
    home = f"/home/{host_vars(name)['ccq_user']}"
    assert host.run(as_user(name, "pipx environment --value PIPX_LOCAL_VENVS")).stdout.strip() == f"{home}/{venvs}"
    # Every consumer of the venv's path took pipx's: the launcher the unit runs, doctor's settings.
    launcher = host.file(f"{home}/.local/share/ccq/ccq-proxy").content_string
    assert f"exec {home}/{venvs}/litellm/bin/litellm " in launcher
    doctor = json.loads(host.file(f"{home}/.config/ccq/doctor.json").content_string)
    assert doctor["paths"]["litellm_venv"] == f"{home}/{venvs}/litellm"
    # No second venv where ccq built it before pipx.
    assert not host.file(f"{home}/.local/share/pipx/venvs/litellm").exists or venvs == ".local/share/pipx/venvs"


def test_debian13_builds_the_proxy_on_its_own_python(converged):
    host = target("fleet-debian13")
    system = host.run("python3 -c 'import sys; print(sys.version_info[:2])'").stdout.strip()
    venv = host.run(f"/home/carol/{PIPX['fleet-debian13'][1]}/litellm/bin/python -c "
                    "'import sys; print(sys.version_info[:2])'").stdout.strip()
    assert system == "(3, 13)" and venv == system


@pytest.mark.parametrize("name", HEALTHY)
def test_the_proxy_runs_in_its_read_only_sandbox_on_both_releases(converged, name):
    """systemd 252 (Debian 12) applies a user unit's mount sandbox only with PrivateUsers=yes,
    systemd 257 (Debian 13) implies the user namespace: on both, the running proxy sees the
    home directory read-only (checked through its own /proc/<pid>/root)."""
    host, user = target(name), host_vars(name)["ccq_user"]
    uid = host.user(user).uid
    pid = host.run(f"sudo -u {user} XDG_RUNTIME_DIR=/run/user/{uid} "
                   "systemctl --user show -p MainPID --value ccq-litellm.service").stdout.strip()
    assert pid not in ("", "0")
    attempt = host.run(f"touch /proc/{pid}/root/home/{user}/ccq-sandbox-probe")
    host.run(f"rm -f /home/{user}/ccq-sandbox-probe")
    assert attempt.rc != 0 and "Read-only file system" in attempt.stderr, attempt.stderr


def test_a_second_run_changes_nothing_on_the_healthy_laptops(converged):
    result, seconds = team_play("site.yml")
    print(f"\nfleet second run: {seconds:.0f} s\n" + tail_from(result.stdout, "PLAY RECAP"))
    counts = recap(result.stdout)
    for name in HEALTHY:
        assert counts[name]["changed"] == 0 and counts[name]["failed"] == 0, (
            tail_from(result.stdout, "PLAY RECAP") + f"\nchanged: {sorted(changed_tasks(result.stdout))}")
    assert counts[BROKEN]["failed"] == 1


def test_doctor_over_the_inventory_reports_every_laptop(converged):
    result, seconds = team_play("playbooks/doctor.yml")
    print(f"\nfleet doctor: {seconds:.0f} s\n" + tail_from(result.stdout, "PLAY RECAP"))
    assert result.returncode != 0
    lines = summary(result.stdout)
    assert [lines.get(name) for name in HEALTHY] == ["ready", "ready"], tail_from(result.stdout, "PLAY RECAP")
    assert "User 'dave' does not exist" in lines[BROKEN]
    for name in HEALTHY:
        # Doctor's own closing line, as the person sees it in their terminal.
        out = target(name).run(as_person(name, "ccq doctor"))
        assert out.rc == 0, out.stdout[-2000:]
        last = out.stdout.strip().splitlines()[-1]
        print(f"{name}: ccq doctor: {last}")
        assert last.startswith("0 failed")


@pytest.mark.parametrize("name", HEALTHY)
def test_ccq_runs_a_subagent_tool_round_trip_for_each_person(converged, fake_upstream, name):
    host = target(name)
    before = len(fake_upstream.read_text().splitlines())
    result = host.run("timeout 300 " + as_person(
        name, f'cd /tmp && ccq -p "{TOOL_PROMPT}" --output-format stream-json --verbose'))
    assert result.rc == 0, result.stdout[-2000:] + result.stderr[-2000:]
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    tool_uses = [b for e in events if e.get("type") == "assistant"
                 for b in e["message"]["content"] if b.get("type") == "tool_use"]
    assert any(b["name"] in ("Agent", "Task") for b in tool_uses), result.stdout[-2000:]
    tool_results = [b for e in events if e.get("type") == "user"
                    for b in (e["message"]["content"] if isinstance(e["message"]["content"], list) else [])
                    if b.get("type") == "tool_result"]
    assert tool_results, "no tool_result came back to the main conversation"
    assert events[-1].get("type") == "result" and not events[-1].get("is_error")
    # The stand-in accepts only the vaulted key: these requests carried it.
    assert len(fake_upstream.read_text().splitlines()) > before
