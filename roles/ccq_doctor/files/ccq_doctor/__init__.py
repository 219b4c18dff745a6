"""ccq doctor, status and logs: name what is wrong with a ccq setup, and the exact fix.

Deployed by roles/ccq_doctor as one runnable file (a zipapp of this package, built on the
controller: roles/ccq_doctor/tasks/main.yml) to ~/.local/share/ccq/ccq_doctor.py, and run by the
ccq shell function (``ccq doctor``, ``ccq status``, ``ccq logs``) or, for a fleet, by
playbooks/doctor.yml.  Stdlib only, Python >= 3.10: it runs with the machine's own python3,
outside LiteLLM's venv, because a broken venv is one of the things it diagnoses.

Its settings come from ~/.config/ccq/doctor.json (settings), which the role writes from the
same variables that built the proxy, how the proxy runs (its service manager, health URL and
litellm command line) among them. Doctor has no defaults of its own: without that file, or with
a field missing from it, it says so in one line and stops.

Secrets: the Cerebras key and the proxy's master key are read from their files into memory.
They go into HTTP headers only, never onto a command line, and every line doctor prints
passes through :func:`ccq_doctor.parsing.mask_secrets`.

``doctor`` prints one line per check (``ok``, ``warn`` or ``FAIL``), each failure followed by
the fix, and exits 1 when any check failed.  The checks are :data:`ccq_doctor.checks.CHECKS`;
the README's troubleshooting table is rendered from that list (``ccq_doctor.py checks
--markdown``) and a unit test keeps the two equal.

The modules, each on the ones before it: settings (doctor.json), parsing (pure helpers), quota
(`ccq status`' quota lines), machine (HTTP, commands, /proc), findings (a check's verdict),
service_managers (systemd, launchd, none), gathering (a fact: gathered once, lazily), the facts of
each side of the machine (service_facts, ccq_facts, proxy_facts, software_facts), facts (all of
them, as the checks ask for them), checks, cli.
"""
