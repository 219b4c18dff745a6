"""A lock with one changed hash stops the install in one line (issue 23), on the converged fleet.

Last on purpose (pytest runs test_fleet.py, test_migration.py, then this file): the failed run
leaves Debian 13 without LiteLLM and its wheelhouse, which nothing after it needs."""

from __future__ import annotations

import re

from fleet_support import PIPX, PROJECT, summary, target, team_play


def test_a_file_whose_hash_is_not_the_locks_stops_the_install_with_one_line(converged, tmp_path):
    """The lock with tqdm's hashes changed, on a Debian 13 laptop whose venv pipx no longer
    records as ccq's: pip refuses the file, the run names it in one line, pipx installs nothing.
    The laptop is left without LiteLLM: this file runs last (pytest takes the files in name
    order), so no install is spent on putting it back before the scenario is destroyed."""
    lock = PROJECT / "roles/litellm_proxy/lock/litellm-requirements.lock"
    tampered = tmp_path / "tampered.lock"
    tampered.write_text(re.sub(r"(?m)^(tqdm==\S+ .*(?:\n\s+--hash=.*)+)",
                               lambda m: re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, m.group(1)),
                               lock.read_text()))
    assert tampered.read_text() != lock.read_text()
    name, venvs = "fleet-debian13", PIPX["fleet-debian13"][1]
    host = target(name)
    host.run(f"rm -f /home/carol/{venvs}/litellm/pipx_metadata.json")
    result, _ = team_play("site.yml", "--limit", name, "-e", f"litellm_proxy_lock_file={tampered}")
    assert result.returncode != 0
    line = summary(result.stdout)[name]
    print(f"\n{name} with a tampered lock: {line}")
    # The lock is named as given: a path of the user's own, not under roles/litellm_proxy/files/.
    assert re.fullmatch(r"FAILED: .*pip refused tqdm==\S+: its sha256 is not the one "
                        + re.escape(str(tampered)) + r" lists .* nothing was installed\.", line), line
    assert not host.file(f"/home/carol/{venvs}/litellm").exists
