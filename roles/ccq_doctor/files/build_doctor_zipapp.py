#!/usr/bin/env python3
"""Build the doctor package (files/ccq_doctor/) into the one runnable file the role deploys.

    build_doctor_zipapp.py <package directory> <output file>

A zipapp: ``#!/usr/bin/env python3`` and a zip archive of the package's .py files, run as
``python3 <file> doctor`` (Python runs a zip archive with a __main__.py whatever its name).
The same sources give the same bytes on every run and every controller: entries sorted, one
fixed timestamp and mode, stored rather than deflated (zlib's output differs between
versions). So the copy task reports ok on a run that changes nothing. The output is written
to a temporary file and renamed over the old one, so a concurrent run never reads half of it.
Stdlib only: it runs with the controller's Python (Ansible's).
"""

from __future__ import annotations

import io
import os
import sys
import zipfile
from pathlib import Path

SHEBANG = b"#!/usr/bin/env python3\n"
# The earliest date a zip entry can carry: no checkout's mtime leaks into the archive.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
UNIX = 3  # the zip "made by" system that carries Unix modes


def zipapp_bytes(package: Path) -> bytes:
    """The zipapp of ``package``: its .py files (no __pycache__), under the package's name."""
    sources = sorted(path for path in package.rglob("*.py") if "__pycache__" not in path.parts)
    if not any(path.name == "__main__.py" for path in sources):
        raise SystemExit(f"{package} has no __main__.py: nothing to run")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        # The archive's top level runs the package (zipapp's own __main__.py would need the
        # package's modules at the top level, where they could shadow the stdlib's).
        entries = [("__main__.py", b"import runpy\nrunpy.run_module(\"ccq_doctor\", run_name=\"__main__\")\n")]
        entries += [(f"{package.name}/{path.relative_to(package).as_posix()}", path.read_bytes()) for path in sources]
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
            info.create_system = UNIX
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, data)
    return SHEBANG + buffer.getvalue()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    package, output = Path(argv[0]), Path(argv[1])
    data = zipapp_bytes(package)
    temporary = output.with_name(f".{output.name}.{os.getpid()}")
    temporary.write_bytes(data)
    temporary.chmod(0o755)
    os.replace(temporary, output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
