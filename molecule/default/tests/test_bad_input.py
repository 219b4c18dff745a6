"""A play that fails validation changes nothing on the target."""

from __future__ import annotations

from helpers.playbook import play_output, run_playbook


def home_tree_digest(host, home: str) -> str:
    """Paths, modes and content hashes of everything under ``home``.

    ~/.ansible is left out: Ansible itself makes its remote temp dir there when it becomes
    the account (to read a key file), before ccq decides anything.
    """
    prune = f"-path {home}/.ansible -prune -o"
    return host.run(
        f"find {home} {prune} -printf '%p %m %s\\n' | sort; "
        f"find {home} {prune} -type f -exec sha256sum {{}} + | sort").stdout


def test_missing_key_without_a_terminal_stops_before_any_change(host):
    before = home_tree_digest(host, "/home/bob")
    # alice provisions bob through sudo: SSH's pipelining (.config/molecule/config.yml) lets one
    # unprivileged account become another without ACL support on the target.
    result = run_playbook("-e", "ccq_user=bob", "-e", "ccq_cerebras_api_key=")
    assert result.returncode != 0
    output = play_output(result)
    assert "No Cerebras API key: run with CEREBRAS_API_KEY=" in output, output[-3000:]
    assert "claude_code :" not in result.stdout
    assert home_tree_digest(host, "/home/bob") == before
