"""The shell start-up files ccq writes parse in bash and zsh, and ccq behaves the same in both.

zsh is macOS's default shell; bash is what most Linux users run, and macOS starts bash as a
login shell. The files checked are those the roles really wrote into a scratch home along the (faked)
Darwin path, not hand-rendered copies; the templates and the block are the same on Linux,
where Molecule checks them in a real login shell.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from platform_support import (
    SENTINEL_MASTER_KEY,
    USER_RC_LINE,
    DarwinConverges,
    HealthServer,
    write_executable,
)

MARKER = re.compile(r"^# BEGIN ccq: .*?^# END ccq: [^\n]*\n", re.M | re.S)
MODEL_ALIAS = "cerebras"
# What ccq hands to Claude Code (compared between bash and zsh).
CCQ_VARIABLES = ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL",
                 "ANTHROPIC_SMALL_FAST_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL", "ANTHROPIC_DEFAULT_SONNET_MODEL",
                 "ANTHROPIC_DEFAULT_OPUS_MODEL", "CLAUDE_CODE_SUBAGENT_MODEL", "NO_PROXY", "no_proxy",
                 "CLAUDE_CODE_MAX_CONTEXT_TOKENS", "CLAUDE_CODE_MAX_OUTPUT_TOKENS",
                 "CLAUDE_CODE_FILE_READ_MAX_OUTPUT_TOKENS", "MAX_MCP_OUTPUT_TOKENS", "BASH_MAX_OUTPUT_LENGTH",
                 "DISABLE_AUTOUPDATER", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
                 "CLAUDE_CODE_AUTO_MODE_SERVER", "CLAUDE_CODE_AUTO_MODE_MODEL", "CLAUDE_CODE_RESUME_HINT_COMMAND")


def ccq_block(path: Path) -> str:
    """The marked ccq block of an rc file (exactly one must exist)."""
    blocks = MARKER.findall(path.read_text())
    assert len(blocks) == 1, f"{path} has {len(blocks)} ccq blocks"
    return blocks[0]


def startup_files(home: Path) -> list[Path]:
    """Every file in the home that carries ccq's block, plus the functions file itself."""
    files = [p for p in sorted(home.iterdir()) if p.is_file() and "# BEGIN ccq:" in p.read_text(errors="replace")]
    return [*files, home / ".config" / "ccq" / "ccq.sh"]


def syntax_check(shell: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([shell, "-n", str(path)], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("shell_name", ["bash", "zsh"])
def test_every_rendered_startup_file_parses(shell_name: str, zsh: str, darwin: DarwinConverges):
    shell = zsh if shell_name == "zsh" else "bash"
    files = startup_files(darwin.home)
    assert sorted(p.name for p in files) == [".bashrc", ".profile", ".zshrc", "ccq.sh"]
    for path in files:
        proc = syntax_check(shell, path)
        assert proc.returncode == 0, f"{shell_name} -n {path}: {proc.stderr}"


def test_a_syntax_error_is_caught_by_the_check(zsh: str, tmp_path: Path):
    """The syntax check above can fail: an unbalanced block is rejected by both shells."""
    broken = tmp_path / "broken.sh"
    broken.write_text("ccq() {\n  if true; then echo x\n}\n")
    assert syntax_check("bash", broken).returncode != 0
    assert syntax_check(zsh, broken).returncode != 0


def test_users_own_lines_are_kept(darwin: DarwinConverges):
    for name in (".bashrc", ".zshrc", ".profile"):
        assert USER_RC_LINE in (darwin.home / name).read_text().splitlines(), name


def test_on_macos_the_bash_login_file_in_use_gets_the_same_block_as_zshrc(darwin: DarwinConverges):
    home = darwin.home
    assert ccq_block(home / ".profile") == ccq_block(home / ".zshrc") == ccq_block(home / ".bashrc")
    # A new ~/.bash_profile would stop login bash from reading the user's ~/.profile.
    assert not (home / ".bash_profile").exists()
    assert not (home / ".local" / "state" / "ccq" / "created-.bash_profile").exists()


def run_ccq(shell: str, home: Path, report: Path) -> dict[str, str]:
    """Source the rendered ccq.sh in ``shell`` and run ccq with a stand-in claude.

    Returns the stand-in's argv (key "ARGV"), the variables it saw, and what the calling
    shell still has afterwards (key "AFTER").
    """
    script = (f'. "{home}/.config/ccq/ccq.sh"\n'
              'ccq -p "hello there"\n'
              'echo "AFTER=${ANTHROPIC_AUTH_TOKEN-unset}" >>"$CCQ_REPORT"\n')
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CCQ_REPORT": str(report),
           "ANTHROPIC_API_KEY": "sk-ant-callers-own-key", "NO_PROXY": "corp.example", "no_proxy": "corp.example"}
    proc = subprocess.run([shell, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{shell}: {proc.stderr}"
    values: dict[str, str] = {}
    for line in report.read_text().splitlines():
        name, _, value = line.partition("=")
        values[name] = value
    return values


@pytest.fixture
def stand_in_claude(darwin: DarwinConverges, tmp_path: Path):
    """A `claude` in the user's bin dir (where npm puts it) that reports what it was given."""
    bin_dir = darwin.home / ".local" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    lines = "".join(f'echo "{name}=${{{name}-unset}}"\n' for name in CCQ_VARIABLES)
    write_executable(bin_dir / "claude", '#!/bin/sh\n{\necho "ARGV=$*"\n' + lines + '} >"$CCQ_REPORT"\n')
    yield tmp_path
    shutil.rmtree(bin_dir)


@pytest.mark.skipif(not shutil.which("curl"), reason="ccq checks the proxy's health with curl")
def test_ccq_gives_claude_the_same_environment_in_zsh_as_in_bash(zsh: str, darwin: DarwinConverges,
                                                                  stand_in_claude: Path):
    # ccq first checks that the proxy is healthy on its port.
    with HealthServer(darwin.port):
        bash_seen = run_ccq("bash", darwin.home, stand_in_claude / "bash")
        zsh_seen = run_ccq(zsh, darwin.home, stand_in_claude / "zsh")
    assert zsh_seen == bash_seen
    # ccq's flags, each as --name=value, before the caller's arguments: a prompt after a
    # several-valued flag such as --disallowedTools would otherwise be read as its values.
    # The free tier's permission mode: manual (auto mode's ~35k-token checks would spend its quota).
    lean = " ".join(f"--disallowedTools={tool}" for tool in
                    ("WebSearch", "Workflow", "ScheduleWakeup", "ReportFindings", "ListAgents", "AskUserQuestion"))
    assert zsh_seen["ARGV"] == f"--model {MODEL_ALIAS} --permission-mode=manual {lean} -p hello there"
    assert zsh_seen["ANTHROPIC_AUTH_TOKEN"] == SENTINEL_MASTER_KEY
    assert zsh_seen["ANTHROPIC_API_KEY"] == "unset"
    assert zsh_seen["NO_PROXY"] == zsh_seen["no_proxy"] == "corp.example,127.0.0.1,localhost"
    for name in CCQ_VARIABLES:
        if name.endswith("_MODEL"):
            assert zsh_seen[name] == MODEL_ALIAS, name
    # The model's real window (the table's free tier), not Claude Code's 1M guess, and no
    # traffic to Anthropic under ccq.
    assert zsh_seen["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "65536"
    # The free tier's budget (docs/budget.md).
    assert zsh_seen["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "8192"
    assert zsh_seen["CLAUDE_CODE_FILE_READ_MAX_OUTPUT_TOKENS"] == zsh_seen["MAX_MCP_OUTPUT_TOKENS"] == "3232"
    assert zsh_seen["BASH_MAX_OUTPUT_LENGTH"] == "9696"
    assert zsh_seen["DISABLE_AUTOUPDATER"] == zsh_seen["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    # Auto mode's check through the proxy (the server-side one cannot pass it), and the exit
    # hint's resume command.
    assert zsh_seen["CLAUDE_CODE_AUTO_MODE_SERVER"] == "0"
    assert zsh_seen["CLAUDE_CODE_RESUME_HINT_COMMAND"] == "ccq"
    # The key lived only in the subshell that ran claude.
    assert zsh_seen["AFTER"] == "unset"
