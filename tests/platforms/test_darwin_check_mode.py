"""site.yml in --check on a (faked) fresh Mac: the Darwin path end to end, changing nothing.

The real site.yml and roles run against this machine with connection local; the facts say
Darwin and the macOS tools are the recording fakes (platform_support.py). Node.js reports an
old version so that the Homebrew path of claude_code is taken too, and an extra CA is given
so that the macOS CA bundle is built (in --check: only shown as a diff).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from platform_support import REPO, SENTINEL_API_KEY, FakeMac, PlaybookRun

# A CA certificate file on the controller, as a corporate laptop would pass in ccq_extra_ca_certs.
TEST_CA = """-----BEGIN CERTIFICATE-----
MIIBlTCCATugAwIBAgIUdNWpRf2K9n0PK2VCMwZBSTwdMx0wCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVY2NxIHRlc3QgY29ycG9yYXRlIENBMB4XDTI2MTEyNTE3MjIw
NFoXDTM2MTEyMjE3MjIwNFowIDEeMBwGA1UEAwwVY2NxIHRlc3QgY29ycG9yYXRl
IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEzAEifFcLc14vy630y+0y3l+8
Gp3dDJkF8sIAyaFG5Tc/o+5GTyn8Ln8UlIqOTQOn5ZvSWwnn9wqmtT/aFnB736NT
MFEwHQYDVR0OBBYEFI58rylMzsQS3mBgD3WxllCYk2sOMB8GA1UdIwQYMBaAFI58
rylMzsQS3mBgD3WxllCYk2sOMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID
SAAwRQIhALcQ4TfoVn0m1F8k8YY8I5mYYhkLChqELUdhTHhTVyk1AiBAbgfZmKpC
ZeHWTVXnQUNjpzlwZtWL8q/TqdUxIE9ADw==
-----END CERTIFICATE-----
"""
DARWIN_BUNDLE = Path("/usr/local/share/ccq/ca-bundle.pem")
DARWIN_TASK_FILES = [
    "roles/ccq/tasks/setup-Darwin.yml",
    "roles/extra_ca_certs/tasks/setup-Darwin.yml",
    "roles/claude_code/tasks/setup-Darwin.yml",
    "roles/ccq_shell/tasks/setup-Darwin.yml",
    "roles/litellm_proxy/tasks/setup-Darwin.yml",
    "roles/litellm_service/tasks/service-launchd.yml",
]
LINUX_TASK_FILES = ["setup-Debian.yml", "service-systemd.yml", "service-none.yml"]


def snapshot(root: Path) -> dict[str, tuple[int, int, float]]:
    """Every path under ``root`` with its mode, size and mtime."""
    return {str(p.relative_to(root)): (p.stat().st_mode, p.stat().st_size, p.stat().st_mtime)
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def check_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[FakeMac, PlaybookRun, dict, dict]:
    mac = FakeMac(tmp_path_factory.mktemp("darwin-check"), node_version="v16.20.2")
    # A Mac in use: the user's own rc files exist.
    mac.write_user_rc_files(".zshrc", ".bashrc")
    ca_file = mac.root / "corporate-ca.pem"
    ca_file.write_text(TEST_CA)
    before = snapshot(mac.home)
    bundle_existed = DARWIN_BUNDLE.exists()
    run = mac.playbook(REPO / "site.yml", "--check", "--diff",
                       "-e", f'{{"ccq_extra_ca_certs": ["{ca_file}"]}}')
    assert bundle_existed or not DARWIN_BUNDLE.exists(), "--check wrote the CA bundle"
    return mac, run, before, snapshot(mac.home)


def test_check_mode_run_on_darwin_succeeds(check_run):
    _, run, _, _ = check_run
    assert run.returncode == 0, run.tail()
    # --check reports what a first run would change.
    assert run.changed > 0


def test_every_darwin_task_file_runs_and_no_linux_one(check_run):
    _, run, _, _ = check_run
    for path in DARWIN_TASK_FILES:
        assert f"included: {REPO / path} for localhost" in run.stdout, path
    for name in LINUX_TASK_FILES:
        assert name not in run.stdout, name
    assert "Node.js and npm come from the distribution" not in run.stdout


def test_homebrew_is_asked_for_node_python_and_pipx_but_installs_nothing(check_run):
    mac, _, _, _ = check_run
    brew = [c[1:] for c in mac.calls() if c[0] == "brew"]
    assert ["info", "--json=v2", "node"] in brew
    # pipx installs LiteLLM on macOS too (issue 23), with Homebrew's python@3.12.
    assert ["info", "--json=v2", "python@3.12", "pipx"] in brew
    assert not [c for c in brew if c[0] in ("install", "upgrade", "uninstall")]


def test_launchd_is_only_queried(check_run):
    mac, _, _, _ = check_run
    launchctl = [c[1] for c in mac.calls() if c[0] == "launchctl"]
    assert launchctl and set(launchctl) == {"print"}


def test_the_account_comes_from_the_macos_directory(check_run):
    mac, run, _, _ = check_run
    assert any(c[0] == "dscacheutil" for c in mac.calls())
    # Every per-user path is in the home dscacheutil reported.
    assert f"path: {mac.home}/Library/LaunchAgents\n" in run.stdout
    assert f"_ccq_proxy_launcher={mac.home}/.local/share/ccq/ccq-proxy\n" in run.stdout


def test_ca_bundle_would_hold_the_system_roots_and_the_extra_ca(check_run):
    mac, run, _, _ = check_run
    assert ["security", "find-certificate", "-a", "-p",
            "/System/Library/Keychains/SystemRootCertificates.keychain"] in mac.calls()
    diff = run.stdout.split("The CA bundle holds the system roots and the extra CA certificates", 1)[1][:4000]
    assert "MIIBkzCCATmgAwIBAgIUCSpT7o3r6bMUL8lrydOxczuzqPcwCgYIKoZIzj0EAwIw" in diff  # the fake root
    assert "MIIBlTCCATugAwIBAgIUdNWpRf2K9n0PK2VCMwZBSTwdMx0wCgYIKoZIzj0EAwIw" in diff  # the extra CA


def test_check_mode_leaves_the_home_untouched(check_run):
    _, _, before, after = check_run
    assert after == before


def test_the_key_never_reaches_the_output_even_with_diff(check_run):
    _, run, _, _ = check_run
    assert SENTINEL_API_KEY not in run.stdout and SENTINEL_API_KEY not in run.stderr


def test_a_mac_without_bash_login_files_would_get_a_new_bash_profile(check_run):
    mac, run, _, _ = check_run
    assert f"+++ after: {mac.home}/.bash_profile" in run.stdout
    assert f"+++ after: {mac.home}/.local/state/ccq/created-.bash_profile" in run.stdout
