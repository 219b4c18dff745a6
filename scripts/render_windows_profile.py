"""Render roles/ccq_shell/templates/ccq.ps1.j2 without Ansible (which does not run on Windows).

For a Windows user (docs/windows.md, native PowerShell) and the CI job that hands the profile to
Windows PowerShell and PowerShell 7. The template uses plain Jinja2 only; its variables are
ccq_shell's own defaults and ccq's settings from their one source: roles/ccq/defaults (the
model alias, the port, the output ceiling, the quota wait) and ccq_layout in roles/ccq/vars.
Usage: python scripts/render_windows_profile.py OUTPUT.ps1
"""

from __future__ import annotations

import sys
from pathlib import Path

import jinja2
import yaml

REPO = Path(__file__).resolve().parents[1]
ROLE = REPO / "roles" / "ccq_shell"
CCQ_DEFAULTS = REPO / "roles" / "ccq" / "defaults" / "main.yml"
CCQ_VARS = REPO / "roles" / "ccq" / "vars" / "main.yml"


def render(template: Path, variables: dict[str, object]) -> str:
    """The template rendered strictly: an undefined variable is an error, not an empty string."""
    # trim_blocks: as the template module renders (its default), so both give the same bytes.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True)
    return env.from_string(template.read_text(encoding="utf-8")).render(variables)


def profile_variables() -> dict[str, object]:
    """The template's variables, wired from ccq's settings as site.yml wires the role."""
    ccq = yaml.safe_load(CCQ_DEFAULTS.read_text(encoding="utf-8"))
    variables = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
    variables.update(ccq_shell_model_alias=ccq["ccq_model_alias"], ccq_shell_proxy_port=ccq["ccq_proxy_port"],
                     ccq_max_tokens_ceiling=ccq["ccq_max_tokens_ceiling"], ccq_quota_max_wait=ccq["ccq_quota_max_wait"],
                     ccq_proxy_debug=ccq["ccq_proxy_debug"],
                     ccq_layout=yaml.safe_load(CCQ_VARS.read_text(encoding="utf-8"))["ccq_layout"])
    return variables


def main(output: str) -> None:
    variables = profile_variables()
    variables["ansible_managed"] = "Rendered by scripts/render_windows_profile.py"
    Path(output).write_text(render(ROLE / "templates" / "ccq.ps1.j2", variables), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1])
