"""The user's rc files (issue 4): ccq owns only its marked block.

A missing rc file is created; the user's lines before and after the block stay byte for byte
when ccq rewrites it; a symlinked rc file (dotfile managers) is edited through the link; every
change leaves a backup; a read-only rc file stops the play with one line and is left alone.
Each test puts the files back as it found them (cp -p from a copy beside them).
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterator
from typing import Any

from helpers.converged_host import as_user, converged_host
from helpers.playbook import play_output, run_playbook

HOME, USER = converged_host().home, converged_host().account

BASHRC = f"{HOME}/.bashrc"
ZSHRC = f"{HOME}/.zshrc"
DOTFILES_ZSHRC = f"{HOME}/dotfiles/zshrc"
BEGIN = "# BEGIN ccq: cc and ccq"
END = "# END ccq: cc and ccq"
FUNCTIONS = f"{HOME}/.config/ccq/ccq.sh"


def split_at_block(text: str) -> tuple[str, str, str]:
    """The user's text before ccq's block, the block (markers included), the text after it."""
    start = text.index(BEGIN)
    end = text.index("\n", text.index(END)) + 1
    return text[:start], text[start:end], text[end:]


def backups(host: Any) -> set[str]:
    """blockinfile's backups (<file>.<pid>.<timestamp>~) beside the rc files."""
    listing = host.run(f"ls -1 {HOME}/.bashrc.*~ {HOME}/.zshrc.*~ {HOME}/dotfiles/zshrc.*~ 2>/dev/null")
    return set(listing.stdout.split())


def fingerprint(host: Any, path: str) -> str:
    return host.run(f"stat -c '%F %a %U %s %Y' {path} && sha256sum {path}").stdout


@contextlib.contextmanager
def rc_files_restored(host: Any) -> Iterator[set[str]]:
    """Copies of both rc files (zshrc as it is: file or link) put back after the test, with
    any backup the test's runs made removed. Yields the backups that existed before."""
    host.run(f"cp -a {BASHRC} /root/rc-test.bashrc && cp -a {ZSHRC} /root/rc-test.zshrc")
    existing = backups(host)
    try:
        yield existing
    finally:
        new = backups(host) - existing
        host.run(f"rm -f {ZSHRC} && cp -a /root/rc-test.bashrc {BASHRC} && cp -a /root/rc-test.zshrc {ZSHRC} "
                 f"&& rm -rf {HOME}/dotfiles /root/rc-test.bashrc /root/rc-test.zshrc "
                 + " ".join(shlex.quote(path) for path in new))


def test_a_missing_rc_file_was_created_with_only_our_block(host):
    # The account's skeleton has no ~/.zshrc: converge created it, and recorded that it did so
    # uninstall removes it again.
    assert host.file(f"{HOME}/.local/state/ccq/created-.zshrc").exists
    zshrc = host.file(ZSHRC)
    assert zshrc.is_file and zshrc.user == USER
    before, block, after = split_at_block(zshrc.content_string)
    assert (before, after) == ("", "")
    assert FUNCTIONS in block
    # A file ccq did not create has no marker.
    assert not host.file(f"{HOME}/.local/state/ccq/created-.bashrc").exists


def test_rewriting_our_block_keeps_the_users_lines_and_follows_a_symlink(host):
    with rc_files_restored(host) as backups_before:
        # The user adds a line after ccq's block; an older ccq left a different block.
        host.run(as_user(f"echo 'export ALICE_AFTER_BLOCK=1  # after ccq' >> {BASHRC}"))
        # ~/.zshrc becomes a link into a dotfiles checkout, with the user's lines on both sides.
        zshrc = host.file(ZSHRC).content_string
        host.run(as_user(
            f"mkdir -p {HOME}/dotfiles && rm {ZSHRC} && "
            f"printf '%s\\n' '# alice zshrc' 'setopt autocd' > {DOTFILES_ZSHRC} && "
            f"printf '%s' {shlex.quote(zshrc)} >> {DOTFILES_ZSHRC} && "
            f"printf '%s\\n' 'alias gs=\"git status\"' >> {DOTFILES_ZSHRC} && "
            f"ln -s {DOTFILES_ZSHRC} {ZSHRC}"))
        for path in (BASHRC, DOTFILES_ZSHRC):
            host.run(as_user(f"sed -i 's#{FUNCTIONS}#/opt/old-ccq/ccq.sh#g' {path}"))
        before = {path: split_at_block(host.file(path).content_string) for path in (BASHRC, DOTFILES_ZSHRC)}
        assert all("/opt/old-ccq/ccq.sh" in block for _, block, _ in before.values())

        result = run_playbook("--tags", "shell")

        assert result.returncode == 0, play_output(result)[-3000:]
        for path, (user_before, _old_block, user_after) in before.items():
            now_before, block, now_after = split_at_block(host.file(path).content_string)
            assert (now_before, now_after) == (user_before, user_after), path
            assert FUNCTIONS in block and "/opt/old-ccq" not in block, path
        assert host.file(ZSHRC).is_symlink and host.file(ZSHRC).linked_to == DOTFILES_ZSHRC
        # One backup per changed file, holding the old block.
        new = backups(host) - backups_before
        assert len(new) == 2, new
        assert all("/opt/old-ccq/ccq.sh" in host.file(path).content_string for path in new)


def test_a_read_only_rc_file_stops_the_play_with_one_line_and_is_left_alone(host):
    with rc_files_restored(host) as backups_before:
        host.run(as_user(f"sed -i 's#{FUNCTIONS}#/opt/old-ccq/ccq.sh#g' {BASHRC} && chmod 444 {BASHRC}"))
        before = fingerprint(host, BASHRC)

        result = run_playbook("--tags", "shell")

        assert result.returncode != 0
        assert (f"{BASHRC} is read-only for {USER}: make it writable (chmod u+w) or drop it from "
                "ccq_shell_rc_files, then re-run.") in play_output(result), play_output(result)[-3000:]
        assert fingerprint(host, BASHRC) == before
        assert backups(host) == backups_before
