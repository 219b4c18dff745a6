"""ccq_zipped_package: a Python package from a role's files, installed on the target as one zip file.

    - ccq_zipped_package:
        src: ccq_proxy            # a package directory, found where copy finds its src (files/)
        dest: ~/.config/ccq/ccq_proxy.zip
        mode: "0600"
        main: ccq_doctor          # optional: a runnable zipapp that runs this package

Python imports a package from a zip file on sys.path (zipimport), and runs a zip file that has
a __main__.py. Why one file: the copy module compares and copies a directory file by file, two
module runs on the target per file (4.9 s of a no-op run for ccq_proxy's 13 files, issue 25);
one file is one comparison. The zip is built here, on the controller, at every run rather than
committed: the package is the one source, and the build takes milliseconds.

The same sources give the same bytes on every run and every controller: entries sorted, one
fixed timestamp and mode, stored rather than deflated (zlib's output differs between versions).
So the copy reports ok on a run that changes nothing, in check mode too. The rest is
ansible.builtin.copy's (dest, mode, owner, backup, ...), as the template action hands its
rendered file to copy.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import zipfile
from pathlib import Path

from ansible import constants
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

# The earliest date a zip entry can carry: no checkout's mtime leaks into the archive.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
UNIX = 3  # the zip "made by" system that carries Unix modes
SHEBANG = b"#!/usr/bin/env python3\n"


def zipped_package(package: Path, main: str | None = None) -> bytes:
    """``package``'s .py files (no __pycache__) under the package's name, as zip bytes. With
    ``main``, a runnable zipapp: a shebang and a top-level __main__.py that runs that module (a
    zipapp's own __main__.py would need the package's modules at the top level, where they could
    shadow the stdlib's)."""
    sources = sorted(path for path in package.rglob("*.py") if "__pycache__" not in path.parts)
    if not sources:
        raise ValueError(f"{package} holds no .py files: not a Python package")
    entries = [(f"{package.name}/{path.relative_to(package).as_posix()}", path.read_bytes()) for path in sources]
    if main is not None:
        entries.insert(0, ("__main__.py", f'import runpy\nrunpy.run_module("{main}", run_name="__main__")\n'.encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
            info.create_system = UNIX
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, data)
    return (SHEBANG if main is not None else b"") + buffer.getvalue()


class ActionModule(ActionBase):
    TRANSFERS_FILES = True
    _VALID_ARGS = frozenset({"src", "dest", "main", "mode", "owner", "group", "backup"})

    def run(self, tmp=None, task_vars=None):
        super().run(tmp, task_vars)
        del tmp  # no effect since ansible-core 2.10
        args = dict(self._task.args)
        source, main = args.pop("src", None), args.pop("main", None)
        if not source or not args.get("dest"):
            raise AnsibleActionFail("ccq_zipped_package needs src (a package directory) and dest")
        package = Path(self._find_needle("files", source))
        try:
            data = zipped_package(package, main)
        except (OSError, ValueError) as error:
            raise AnsibleActionFail(f"cannot zip {package}: {error}") from error

        local_tempdir = tempfile.mkdtemp(dir=constants.DEFAULT_LOCAL_TMP)
        try:
            zipped = Path(local_tempdir) / f"{package.name}.zip"
            zipped.write_bytes(data)
            copy_task = self._task.copy()
            copy_task.args = {**args, "src": str(zipped)}
            # ansible.legacy, as the template action calls it: a local override of copy still applies.
            copy_action = self._shared_loader_obj.action_loader.get(
                "ansible.legacy.copy", task=copy_task, connection=self._connection,
                play_context=self._play_context, loader=self._loader, templar=self._templar,
                shared_loader_obj=self._shared_loader_obj)
            return copy_action.run(task_vars=task_vars)
        finally:
            shutil.rmtree(local_tempdir, ignore_errors=True)
            self._remove_tmp_path(self._connection._shell.tmpdir)

