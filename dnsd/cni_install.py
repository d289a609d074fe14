"""``dnsd cni-install [DIR]``: write the ``netcore-dns`` CNI plugin executable into a CNI plugin directory.

The executable is a short Python script that runs ``dnsd.cni_plugin`` with the
interpreter the command runs with, started as ``python -I -S`` (``-IS`` on the
``#!`` line: isolated from the caller's ``PYTHON*`` variables and user site,
and without the ``site`` module, whose start-up work (path files, installed
distributions) is most of a bare interpreter's start on some installations),
and the directory holding this ``dnsd`` package put first on ``sys.path``.
The plugin needs nothing else: it imports the standard library and two
modules of its own package. The dnsd it starts runs without ``-S``, with that
directory added to ``PYTHONPATH``, so it finds its dependencies as
``dnsd`` itself does.

DIR defaults to ``/opt/cni/bin``, where containerd, CRI-O and nerdctl look
(``/usr/lib/cni`` is Debian's directory, which Podman also searches). A file
of that name not written by this command is never replaced.
"""

from __future__ import annotations

import os
import sys

from .cni_plugin import PLUGIN_NAME

DEFAULT_DIR = "/opt/cni/bin"
MARKER = "# netcore-dns: written by `dnsd cni-install`"

SCRIPT = """\
#!{interpreter} -IS
{marker}; the CNI plugin of dnsd (dnsd.cni_plugin), run by the CNI runtime.
import sys
sys.path.insert(0, {package_parent!r})
from dnsd.cni_plugin import main
sys.exit(main())
"""


def script_text(interpreter: str, package_parent: str) -> str:
    """The executable's text for this interpreter and the directory holding the ``dnsd`` package."""
    return SCRIPT.format(interpreter=interpreter, marker=MARKER, package_parent=package_parent)


def install(directory: str, interpreter: str | None = None) -> str:
    """Write (or rewrite) DIR/netcore-dns, executable, by rename; returns its path.

    OSError if the directory cannot be written; FileExistsError if a file of that name is not ours.
    """
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = script_text(interpreter or sys.executable, package_parent)
    path = os.path.join(directory, PLUGIN_NAME)
    try:
        with open(path) as existing:
            if MARKER not in existing.read(4096):
                raise FileExistsError(f"{path} exists and was not written by dnsd cni-install: not replaced")
    except (FileNotFoundError, UnicodeDecodeError) as err:
        if isinstance(err, UnicodeDecodeError):
            raise FileExistsError(f"{path} exists and was not written by dnsd cni-install: not replaced") from None
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{PLUGIN_NAME}.{os.getpid()}")
    with open(temporary, "w") as script:
        script.write(text)
    os.chmod(temporary, 0o755)
    os.replace(temporary, path)
    return path


def main(argv: list[str]) -> int:
    """The command: prints the path written; one line on stderr and exit 1 (2 for a usage error) otherwise."""
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        if argv[:1] in (["-h"], ["--help"]):
            print(f"usage: dnsd cni-install [DIR]   (default {DEFAULT_DIR}): writes DIR/{PLUGIN_NAME}")
            return 0
        print(f"dnsd cni-install: usage: dnsd cni-install [DIR] (got {' '.join(argv)!r})", file=sys.stderr)
        return 2
    try:
        print(install(argv[0] if argv else DEFAULT_DIR))
    except OSError as err:
        print(f"dnsd cni-install: {err.strerror + ': ' + err.filename if err.filename else err}", file=sys.stderr)
        return 1
    return 0
