"""After converge + uninstall: nothing of ccq is left, and the user's own files are intact."""

from __future__ import annotations

from helpers.converged_host import converged_host
from helpers.playbook import play_output, run_playbook

TARGET = converged_host()
HOME = TARGET.home
OURS = [
    f"{HOME}/.config/ccq",
    f"{HOME}/.config/systemd/user/ccq-litellm.service",
    f"{HOME}/.local/share/ccq/ccq-proxy",
    f"{HOME}/.local/share/ccq/pipx-tool",
    f"{HOME}/.cache/ccq",
    f"{HOME}/.local/bin/claude",
    f"{HOME}/.local/bin/litellm",
    f"{HOME}/.local/bin/litellm-proxy",
    f"{HOME}/.local/lib/node_modules/@anthropic-ai/claude-code",
    f"{HOME}/.local/share/ccq/claude-code",
    f"{HOME}/.local/state/ccq",
    f"{HOME}/.secrets/ccq_litellm_master_key",
]


# pipx's homes: Debian 12's pipx 1.1.0 (its venvs in ~/.local/pipx), 1.2 and later, and where
# ccq built the venv before pipx.
PIPX_HOMES = (f"{HOME}/.local/pipx", f"{HOME}/.local/share/pipx")
# What molecule/uninstall/side_effect.yml recorded of the account's other pipx app (tqdm), and
# the script that recorded it: its first line says where pipx keeps its venvs.
OTHER_APP_BEFORE, OTHER_APP_FINGERPRINT = "/tmp/other-pipx-app.before", "/tmp/fingerprint-other-pipx-app.sh"


def pipx_venvs(host) -> str:
    """Where the account's pipx keeps its venvs (it holds the other app, so it stays)."""
    return host.file(OTHER_APP_BEFORE).content_string.splitlines()[0].removeprefix("venvs ")


def test_nothing_of_ccq_is_left(host):
    venvs = pipx_venvs(host)
    # LiteLLM's venv is gone from pipx's home; a pipx home that held nothing else is gone whole.
    ours = OURS + [f"{venvs}/litellm"] + [home for home in PIPX_HOMES if home != venvs.rsplit("/", 1)[0]]
    left = [path for path in ours if host.file(path).exists]
    assert left == []
    for rc in (f"{HOME}/.bashrc", f"{HOME}/dotfiles/zshrc"):
        assert "ccq" not in host.file(rc).content_string


def test_the_proxy_is_stopped_and_its_port_closed(host):
    assert host.run(f"curl -fsS -o /dev/null {TARGET.proxy_url}/health/liveliness").rc != 0
    assert "litellm" not in host.run("ps -eo args").stdout


def test_linger_is_back_to_what_it_was(host):
    assert not host.file(f"/var/lib/systemd/linger/{TARGET.account}").exists


def test_the_cerebras_key_file_is_kept_by_default(host):
    key = host.file(f"{HOME}/.secrets/cerebras_api_key")
    assert key.exists and key.mode == 0o600


def test_the_users_own_files_are_byte_for_byte_unchanged(host):
    after = set(host.run(f"cd {HOME} && find . -xdev -type f -exec sha256sum {{}} + | sort").stdout.splitlines())
    before = host.file("/root/alice-before.sha256").content_string.splitlines()
    changed_or_gone = [line for line in before if line not in after]
    assert changed_or_gone == []


def test_no_file_of_ccq_is_left_in_the_home(host):
    after = host.run(f"cd {HOME} && find . -xdev -type f | sort").stdout.splitlines()
    before = {line.split("  ", 1)[1] for line in host.file("/root/alice-before.sha256").content_string.splitlines()}
    # Kept on purpose: the Cerebras key (ccq_remove_secrets=false), rc backups (name~), and
    # the package managers' own download caches.
    # The other pipx app's own (test above), and pipx's home that holds it, stay too.
    pipx_home = "./" + pipx_venvs(host).rsplit("/", 1)[0].removeprefix(f"{HOME}/") + "/"
    kept = ("./.secrets/cerebras_api_key", "./.npm/", "./.cache/", "./.local/bin/tqdm", pipx_home)
    left = [path for path in after
            if path not in before and not path.startswith(kept) and not path.endswith("~")]
    assert left == []


def test_the_accounts_other_pipx_app_is_untouched(host):
    listed = host.run("sudo -iu alice pipx list --short")
    assert listed.rc == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["tqdm"], listed.stdout
    after = host.run(f"sudo -iu alice bash {OTHER_APP_FINGERPRINT}")
    assert after.rc == 0, after.stderr
    assert after.stdout == host.file(OTHER_APP_BEFORE).content_string
    assert host.run(f"sudo -iu alice {HOME}/.local/bin/tqdm --version").rc == 0


def test_the_dotfiles_symlink_is_still_a_symlink(host):
    zshrc = host.file(f"{HOME}/.zshrc")
    assert zshrc.is_symlink
    assert zshrc.linked_to == f"{HOME}/dotfiles/zshrc"


def _files_in_home(host) -> set[str]:
    # Left out: Ansible's own remote temp dir, made by the run itself, and the package
    # managers' caches (npm writes a debug log under ~/.npm/_logs on every call).
    prune = " ".join(f"-path ./{name} -prune -o" for name in (".ansible", ".npm", ".cache"))
    listing = host.run(f"cd {HOME} && find . -xdev {prune} \\( -type f -o -type l \\) -print")
    # pipx's own command logs, which it writes and rotates on every call (uninstall calls it).
    return {path for path in listing.stdout.splitlines() if "/pipx/logs/" not in path and "/pipx/log/" not in path}


def test_uninstall_with_remove_secrets_takes_the_key_file_and_nothing_else(host):
    # Last on purpose: the key file is gone afterwards (the scenario's next converge has the
    # key in its inventory). A second uninstall also shows uninstall runs on an uninstalled host.
    before = _files_in_home(host)
    result = run_playbook("-e", "ccq_remove_secrets=true", playbook="playbooks/uninstall.yml")
    assert result.returncode == 0, play_output(result)[-3000:]
    after = _files_in_home(host)
    assert before - after == {"./.secrets/cerebras_api_key"}
    assert after - before == set()
    assert host.file(f"{HOME}/.secrets/github_token").content_string == "not-a-real-token\n"
