"""ccq's playbooks run from the controller, as a user runs them (the tests' one way to do it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_playbook(*extra: str, playbook: str = "site.yml", inventory: str | None = None,
                 env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``ansible-playbook -i <inventory> <playbook> <extra>`` from the project directory.

    The inventory defaults to the Molecule scenario's. CEREBRAS_API_KEY is taken out of the
    environment, so a test sees only the key sources it sets up itself (``env`` adds to it).
    """
    if inventory is None:
        inventory = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
    run_env = {k: v for k, v in os.environ.items() if k != "CEREBRAS_API_KEY"}
    # Plain text whatever the caller's terminal settings (Molecule's environment forces colour).
    run_env.update({"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", **(env or {})})
    ansible_playbook = Path(sys.executable).with_name("ansible-playbook")
    command = str(ansible_playbook) if ansible_playbook.exists() else "ansible-playbook"
    return subprocess.run([command, "-i", inventory, playbook, *extra], cwd=REPO, env=run_env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def play_output(result: subprocess.CompletedProcess[str]) -> str:
    """A run's stdout and stderr as one line: ansible-core 2.19 prints failures on stderr under
    Molecule's settings and wraps long lines."""
    return " ".join((result.stdout + result.stderr).split())


def changed_tasks(output: str) -> set[str]:
    """Names of the tasks (and handlers) that reported a change in a playbook run's output."""
    import re

    names, current = set(), None
    for line in output.splitlines():
        task = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.+?)\]", line)
        if task:
            current = task.group(1)
        elif line.startswith("changed:") and current:
            names.add(current)
    return names


SELECT_MODEL_TASKS = REPO / "roles/ccq/tasks/select_model.yml"
CCQ_DEFAULTS = REPO / "roles/ccq/defaults/main.yml"
CCQ_VARS = REPO / "roles/ccq/vars/main.yml"


def run_select_model(tmp_path: Path, variables: dict[str, object], key: str,
                     *extra: str) -> subprocess.CompletedProcess[str]:
    """roles/ccq/tasks/select_model.yml alone (connection local; it only reads) with the role's
    defaults and vars and ``variables`` on top; the Cerebras key reaches Ansible as a variable
    from the environment, never on argv. What it decides is printed as FACTS=<base64 JSON>
    (see select_model_facts)."""
    import json

    playbook = tmp_path / "select.yml"
    playbook.write_text(f"""
- hosts: localhost
  gather_facts: false
  vars_files: [{CCQ_DEFAULTS}, {CCQ_VARS}]
  tasks:
    - ansible.builtin.include_tasks: {SELECT_MODEL_TASKS}
    - ansible.builtin.debug:
        msg: "FACTS={{{{ {{'selected': ccq_cerebras_model_selected, 'env': ccq_claude_code_environment,
               'proxy_models': ccq_proxy_models, 'arguments': ccq_claude_code_arguments}} | to_json | b64encode }}}}"
""")
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    (tmp_path / "key.yml").write_text(
        "ccq_resolved_cerebras_api_key: \"{{ lookup('ansible.builtin.env', 'CCQ_TEST_KEY') }}\"\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "CEREBRAS_"))}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default", CCQ_TEST_KEY=key)
    ansible_playbook = Path(sys.executable).with_name("ansible-playbook")
    return subprocess.run(
        [str(ansible_playbook), "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
         "-e", f"@{tmp_path / 'vars.json'}", "-e", f"@{tmp_path / 'key.yml'}", str(playbook), *extra],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def select_model_facts(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    """What run_select_model's play decided: selected, env (as the shell exports it: strings), proxy_models,
    arguments (the flags ccq puts before the user's own)."""
    import base64
    import json
    import re

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    facts = json.loads(base64.b64decode(re.search(r"FACTS=([A-Za-z0-9+/=]+)", result.stdout).group(1)))
    facts["env"] = {name: str(value) for name, value in facts["env"].items()}
    return facts
