"""The native-PowerShell profile (ccq.ps1) matches the POSIX ccq it stands in for.

No PowerShell runs here, so the rendered file is checked statically: its brackets nest, its
ccq sets exactly the variables the rendered ccq.sh exports or unsets, the proxy it starts gets
the variables of the role's environment file, and its paths are ccq's layout.
"""

from __future__ import annotations

import importlib.util
import re

import pytest
import yaml

from platform_support import REPO, SENTINEL_API_KEY, SENTINEL_MASTER_KEY, DarwinConverges

PAIRS = {"}": "{", ")": "(", "]": "["}


def bracket_problems(source: str) -> list[str]:
    """Unbalanced or crossed (), [] and {} outside PowerShell strings and comments.

    Knows single-quoted strings ('' escapes a quote), double-quoted strings (` escapes) and
    line comments; enough for a hand-written profile without here-strings.
    """
    problems: list[str] = []
    stack: list[tuple[str, int]] = []
    quote: str | None = None
    line = 1
    i = 0
    while i < len(source):
        ch = source[i]
        if ch == "\n":
            line += 1
        if quote == "'":
            if ch == "'" and source[i + 1:i + 2] == "'":
                i += 1
            elif ch == "'":
                quote = None
        elif quote == '"':
            if ch == "`":
                i += 1
            elif ch == '"':
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            while i < len(source) and source[i] != "\n":
                i += 1
            continue
        elif ch in "([{":
            stack.append((ch, line))
        elif ch in ")]}":
            if not stack or stack[-1][0] != PAIRS[ch]:
                problems.append(f"line {line}: unexpected {ch!r}")
            else:
                stack.pop()
        i += 1
    if quote:
        problems.append(f"unterminated {quote} string")
    problems.extend(f"line {opened_at}: {opened!r} never closed" for opened, opened_at in stack)
    return problems


def function_body(source: str, name: str, opener: str = "{", closer: str = "}") -> str:
    """The text of ``name``'s body, from the opening brace to the matching closing one."""
    match = re.search(rf"^(?:function\s+{re.escape(name)}\b[^\n{{]*|{re.escape(name)}\(\)\s*)\{{", source, re.M)
    assert match, f"no function {name}"
    depth, start = 0, match.end() - 1
    for i in range(start, len(source)):
        depth += {opener: 1, closer: -1}.get(source[i], 0)
        if depth == 0:
            return source[start:i + 1]
    raise AssertionError(f"function {name} never closes")


def posix_ccq_variables(ccq_sh: str) -> set[str]:
    """Every variable the POSIX ccq exports to claude, and every one it unsets."""
    body = function_body(ccq_sh, "ccq")
    joined = body.replace("\\\n", " ")
    exported = {name.split("=", 1)[0] for line in re.findall(r"^\s*export\s+([^\n;]+)", joined, re.M)
                for name in line.split()}
    unset = {name for line in re.findall(r"^\s*unset\s+([^\n;]+)", joined, re.M) for name in line.split()}
    return exported | unset


def powershell_ccq_variables(ps1: str) -> set[str]:
    """Every variable the PowerShell ccq assigns for claude, and every one it removes."""
    body = function_body(ps1, "ccq")
    assigned = set(re.findall(r"\$env:(\w+)\s*=", body))
    removed = set(re.findall(r"Remove-Item\s+-Path\s+Env:(\w+)", body))
    if "foreach ($name in $script:CcqLimits.Keys)" in body:
        assigned |= set(ps_limits(ps1))
    return assigned | removed


def ps_limits(ps1: str) -> dict[str, str]:
    """The $script:CcqLimits table: what ccq tells Claude Code beyond the routing."""
    table = re.search(r"\$script:CcqLimits\s*=\s*\[ordered\]@\{(.*?)\n\}", ps1, re.S)
    assert table, "the profile has no CcqLimits table"
    return dict(re.findall(r"^\s*(\w+)\s*=\s*'([^']*)'", table.group(1), re.M))


def ps_arguments(ps1: str) -> list[str]:
    """The $script:CcqArguments list: the flags ccq puts before the user's own."""
    listed = re.search(r"^\$script:CcqArguments = @\((.*)\)$", ps1, re.M)
    assert listed, "the profile has no CcqArguments list"
    return re.findall(r"'([^']*)'", listed.group(1))


def posix_exported_values(ccq_sh: str) -> dict[str, str]:
    """NAME=value pairs the POSIX ccq exports with a literal value."""
    return dict(re.findall(r"^\s*export (\w+)='?([^'\s]*)'?$", function_body(ccq_sh, "ccq"), re.M))


@pytest.fixture(scope="module")
def ps1(darwin: DarwinConverges) -> str:
    return (darwin.home / "ccq.ps1").read_text()


@pytest.fixture(scope="module")
def ccq_sh(darwin: DarwinConverges) -> str:
    return (darwin.home / ".config" / "ccq" / "ccq.sh").read_text()


def test_profile_is_clearly_marked_untested(ps1: str):
    assert "UNTESTED" in "\n".join(ps1.splitlines()[:5])


def test_brackets_and_braces_balance(ps1: str):
    assert bracket_problems(ps1) == []


def test_the_balance_check_catches_a_missing_brace():
    assert bracket_problems("function ccq {\n  if ($x) { 'a}' \n}\n") == ["line 1: '{' never closed"]
    assert bracket_problems("@('a', 'b'}") != []


def test_ccq_sets_the_same_variables_as_the_posix_ccq(ps1: str, ccq_sh: str):
    posix = posix_ccq_variables(ccq_sh)
    # The extraction itself must have found the contract, not an empty set.
    assert {"ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "CLAUDE_CODE_SUBAGENT_MODEL", "ANTHROPIC_API_KEY"} <= posix
    assert powershell_ccq_variables(ps1) == posix


def test_ccq_restores_every_variable_it_touches(ps1: str, ccq_sh: str):
    body = function_body(ps1, "ccq")
    names_list = re.search(r"\$names\s*=\s*@\(([^)]*)\)", body)
    assert names_list, "ccq keeps no list of the variables it restores"
    restored = set(re.findall(r"'(\w+)'", names_list.group(1)))
    if re.search(r"\$names\s*=\s*@\([^)]*\)\s*\+\s*@\(\$script:CcqLimits\.Keys\)", body):
        restored |= set(ps_limits(ps1))
    assert restored == posix_ccq_variables(ccq_sh)
    assert re.search(r"finally\s*\{[^}]*SetEnvironmentVariable\(\$name, \$saved\[\$name\]\)", body)


def test_ccq_tells_claude_the_same_limits_as_the_posix_ccq(ps1: str, ccq_sh: str):
    limits = ps_limits(ps1)
    assert limits["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "65536" and limits["DISABLE_AUTOUPDATER"] == "1"
    assert limits == {name: value for name, value in posix_exported_values(ccq_sh).items() if name in limits}
    assert set(limits) <= set(posix_exported_values(ccq_sh))


def test_ccq_runs_claude_with_the_alias_and_the_callers_arguments(ps1: str, ccq_sh: str):
    alias = re.search(r"exec claude --model (\S+)((?: --\S+=\S+)*) \"\$@\"", ccq_sh)
    assert alias, "the POSIX ccq no longer runs claude --model <alias> <ccq's flags> <the caller's arguments>"
    assert f"$script:CcqModelAlias = '{alias.group(1).strip(chr(39))}'" in ps1
    # The same flags, before the caller's arguments, in both shells (the permission mode, the
    # tools left out).
    assert ps_arguments(ps1) == [flag.strip("'") for flag in alias.group(2).split()]
    assert "--permission-mode=manual" in ps_arguments(ps1) and "--disallowedTools=WebSearch" in ps_arguments(ps1)
    assert "& claude --model $script:CcqModelAlias @script:CcqArguments @args" in function_body(ps1, "ccq")


def test_proxy_started_on_demand_gets_the_variables_of_the_roles_environment_file(ps1: str):
    env_template = (REPO / "roles" / "litellm_proxy" / "templates" / "litellm.env.j2").read_text()
    role_names = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", env_template, re.M))
    body = function_body(ps1, "Start-CcqProxy")
    proxy_env = re.search(r"\$proxyEnv\s*=\s*\[ordered\]@\{(.*?)\n\s*\}", body, re.S)
    assert proxy_env, "Start-CcqProxy builds no proxy environment"
    assert set(re.findall(r"^\s*([A-Z][A-Z0-9_]*)\s*=", proxy_env.group(1), re.M)) == role_names
    assert "'--host', '127.0.0.1'" in body and "drop_params" not in body.replace("Never --drop_params", "")


def test_paths_follow_ccqs_layout(ps1: str):
    layout = yaml.safe_load((REPO / "roles" / "ccq" / "vars" / "main.yml").read_text())["ccq_layout"]
    table = re.search(r"\$script:CcqLayout\s*=\s*@\{(.*?)\n\}", ps1, re.S)
    assert table
    ps_layout = dict(re.findall(r"^\s*(\w+)\s*=\s*'([^']*)'", table.group(1), re.M))
    assert ps_layout and all(layout[name] == value for name, value in ps_layout.items()), ps_layout


def test_key_files_are_restricted_with_icacls_and_no_key_is_in_the_profile(ps1: str):
    protect = function_body(ps1, "Protect-CcqPath")
    assert "icacls $Path /inheritance:r /grant:r" in protect
    keys = function_body(ps1, "Set-CcqKeys")
    assert keys.count("Protect-CcqPath") == 3  # the directory and both key files
    assert "Read-Host -AsSecureString" in keys
    assert SENTINEL_API_KEY not in ps1 and SENTINEL_MASTER_KEY not in ps1


def render_windows_profile():
    """scripts/render_windows_profile.py, imported by path (scripts/ is not a package)."""
    script = REPO / "scripts" / "render_windows_profile.py"
    spec = importlib.util.spec_from_file_location("render_windows_profile", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_windows_ci_job_checks_the_same_profile_ansible_renders(ps1: str, darwin: DarwinConverges):
    """render_windows_profile.py (plain Jinja2, for Windows) gives what the template module gave."""
    renderer = render_windows_profile()
    variables = renderer.profile_variables()
    variables.update(ccq_shell_proxy_port=darwin.port, ansible_managed=ps1.splitlines()[0][2:],
                     ccq_shell_claude_code_environment=ps_limits(ps1),
                     ccq_shell_claude_code_arguments=ps_arguments(ps1))
    assert renderer.render(renderer.ROLE / "templates" / "ccq.ps1.j2", variables) == ps1


def test_the_proxy_powershell_starts_takes_the_users_settings():
    """The output ceiling and the quota wait are ccq's settings, not numbers of the profile's own."""
    renderer = render_windows_profile()
    variables = renderer.profile_variables() | {"ansible_managed": "test"}
    defaults = yaml.safe_load((REPO / "roles" / "ccq" / "defaults" / "main.yml").read_text())
    proxy_env = function_body(renderer.render(renderer.ROLE / "templates" / "ccq.ps1.j2", variables), "Start-CcqProxy")
    assert f"CCQ_MAX_TOKENS_CEILING       = '{defaults['ccq_max_tokens_ceiling']}'" in proxy_env
    variables.update(ccq_max_tokens_ceiling=4096, ccq_quota_max_wait=5)
    proxy_env = function_body(renderer.render(renderer.ROLE / "templates" / "ccq.ps1.j2", variables), "Start-CcqProxy")
    assert "CCQ_MAX_TOKENS_CEILING       = '4096'" in proxy_env and "CCQ_QUOTA_MAX_WAIT           = '5'" in proxy_env


def test_litellm_is_found_where_pipx_keeps_it(ps1: str):
    start = function_body(ps1, "Start-CcqProxy")
    assert "pipx environment --value PIPX_LOCAL_VENVS" in start
    assert ".local/share/pipx" not in ps1 and "litellm_venv" not in ps1
