"""Migration to pipx (issue 23), on the converged fleet, after test_fleet.py:

- Debian 12 (pipx 1.1.0, venvs in ~/.local/pipx): a laptop ccq provisioned before pipx, with its
  venv built by `python3 -m venv` in ~/.local/share/pipx/venvs/litellm and ~/.local/bin/litellm
  linked into it, no pipx install of litellm, and the callback's modules as loose files;
- Debian 13 (pipx 1.7.1): a blog-recipe-style `pipx install litellm[proxy]==<pin>` plus
  `pipx inject litellm openai==<locked>` that pipx recorded with other arguments than ccq's.

One run makes both pipx's install of the lock, and a second changes nothing."""

from __future__ import annotations

import json
import shlex

import testinfra

from fleet_support import HEALTHY, host_vars, recap, summary, tail_from, team_play
from helpers.playbook import changed_tasks
from scripts.locks import read_pins

PINS = read_pins()


def run_as(name: str, command: str):
    user = host_vars(name)["ccq_user"]
    return testinfra.get_host(f"podman://{name}").run(f"sudo -iu {user} -- sh -c {shlex.quote(command)}")


def test_a_pre_pipx_venv_and_a_recipe_style_install_become_pipxs_install_of_the_lock(converged):
    old = ".local/share/pipx/venvs/litellm"
    # ...and its callback's modules beside it as files, from before the ccq_proxy package.
    modules = [f"~/.config/ccq/{name}" for name in ("ccq_normalizer.py", "ccq_quota.py")]
    setup12 = run_as("fleet-debian12", f"pipx uninstall litellm; python3 -m venv ~/{old} "
                                       f"&& ln -sfn ~/{old}/bin/litellm ~/.local/bin/litellm "
                                       f"&& touch {' '.join(modules)}")
    assert setup12.rc == 0, setup12.stderr
    wheels = "~/.cache/ccq/litellm-wheelhouse"
    setup13 = run_as("fleet-debian13", f"pipx uninstall litellm; pipx install --pip-args='--no-index --find-links "
                                       f"{wheels} --no-cache-dir' 'litellm[proxy]=={PINS.litellm_version}' && "
                                       f"pipx inject --pip-args='--no-index --find-links {wheels}' litellm "
                                       "'openai>=1.99.1,<1.100'")
    assert setup13.rc == 0, setup13.stderr

    migrated, seconds = team_play("site.yml", "--limit", ",".join(HEALTHY))
    print(f"\nfleet migration run: {seconds:.0f} s\n" + tail_from(migrated.stdout, "PLAY RECAP"))
    assert [summary(migrated.stdout).get(name) for name in HEALTHY] == ["ready", "ready"], \
        tail_from(migrated.stdout, "PLAY RECAP")

    assert run_as("fleet-debian12", f"test -e ~/{old}").rc != 0, "the pre-pipx venv is still there"
    left = run_as("fleet-debian12", " || ".join(f"test -e {path}" for path in modules))
    assert left.rc != 0, "a module from before the package is still there"
    link = run_as("fleet-debian12", "readlink ~/.local/bin/litellm").stdout.strip()
    assert link == f"/home/{host_vars('fleet-debian12')['ccq_user']}/.local/pipx/venvs/litellm/bin/litellm", link
    for name in HEALTHY:
        listed = json.loads(run_as(name, "pipx list --json").stdout)["venvs"]["litellm"]["metadata"]
        main = listed["main_package"]
        assert main["package_version"] == PINS.litellm_version
        assert main["pip_args"][:2] == ["--no-index", "--find-links"]
        # What ccq's callback imports beyond LiteLLM's tree (litellm_proxy_pipx_inject), nothing else.
        assert sorted(listed["injected_packages"]) == ["json-repair"], listed["injected_packages"]

    again, _ = team_play("site.yml", "--limit", ",".join(HEALTHY))
    counts = recap(again.stdout)
    assert [counts[name]["changed"] for name in HEALTHY] == [0, 0], (
        tail_from(again.stdout, "PLAY RECAP") + f"\nchanged: {sorted(changed_tasks(again.stdout))}")
