#!/usr/bin/python
"""Test-only facts module: reports this Linux host as macOS.

Listed after ansible.builtin.setup in FACTS_MODULES (with ansible_facts_parallel=false, so
it runs last and its facts win), it makes the roles take their Darwin path through the real
site.yml and role files. Only the OS identity is faked; the macOS tools the Darwin tasks call
are faked separately (tests/platforms/fake_macos).
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    module.exit_json(changed=False, ansible_facts={
        "os_family": "Darwin",
        "system": "Darwin",
        "distribution": "MacOSX",
        "distribution_major_version": "14",
        "distribution_version": "14.7",
    })


if __name__ == "__main__":
    main()
