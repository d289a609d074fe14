"""``dnsd cni-install [--state-dir DIR] [--python-only] [PLUGIN_DIR]``: write the ``netcore-dns`` CNI plugin
executable into a CNI plugin directory (issue 29).

The executable is ``dnsd/cni/shim.c`` compiled for this installation (``cc``,
as ``dnsd/io/_replay.c`` is built): a C program of a few kilobytes that hands
each call to the running dnsd (``dnsd.cni.service``) and runs the Python
plugin (``dnsd.cni.plugin``) only when no dnsd takes it. A runtime then pays a
C program's start per call instead of a Python interpreter's (bench/cni.py
has both). The build writes into it: the default state dir, this interpreter,
and the directory holding this ``dnsd`` package.

Without a C compiler, or with ``--python-only``, the executable is a Python
script that always runs the whole plugin: the same behaviour, a Python start
per call. Both start Python as ``python -I -S`` (isolated from the caller's
``PYTHON*`` variables and user site, without the ``site`` module: most of a
bare interpreter's start on some installations) with the package directory
put first on ``sys.path``; the plugin imports only the standard library and
two modules of its own package. The dnsd it starts runs without ``-S``, with
that directory added to ``PYTHONPATH``, so it finds its dependencies as
``dnsd`` itself does.

PLUGIN_DIR defaults to ``/opt/cni/bin``, where containerd, CRI-O and nerdctl
look (``/usr/lib/cni`` is Debian's, which Podman also searches). The state dir
defaults to ``/run/netcore-cni``; ``$NETCORE_CNI_STATE_DIR``, if set when the
runtime runs the plugin, overrides it. A file of that name not written by this
command is never replaced.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import dnsd
from dnsd.cni.plugin import DEFAULT_STATE_DIR, PLUGIN_NAME
from netcore.system.arguments import OneLineParser
from netcore.system.files import replacing, write_atomically

DEFAULT_DIR = "/opt/cni/bin"
MARKER = "netcore-dns: written by `dnsd cni-install`"  # in both kinds of executable, as text

SCRIPT = """\
#!{interpreter} -IS
# {marker}; the CNI plugin of dnsd (dnsd.cni.plugin), run by the CNI runtime.
import sys
sys.path.insert(0, {package_parent!r})
from dnsd.cni.plugin import main
sys.exit(main({state_dir!r}))
"""


def fallback_code(package_parent: str, state_dir: str) -> str:
    """What ``python -I -S -c`` runs: the whole plugin in Python, for this package and state dir."""
    return (f"import sys; sys.path.insert(0, {package_parent!r}); from dnsd.cni.plugin import main; "
            f"sys.exit(main({state_dir!r}))")


def script_text(interpreter: str, package_parent: str, state_dir: str = DEFAULT_STATE_DIR) -> str:
    """The Python executable's text."""
    return SCRIPT.format(interpreter=interpreter, marker=MARKER, package_parent=package_parent, state_dir=state_dir)


def c_string(text: str) -> str:
    """``text`` as a C string literal (octal escapes for everything but printable ASCII)."""
    return '"' + "".join(char if char.isascii() and char.isprintable() and char not in '"\\?' else
                         "".join(f"\\{byte:03o}" for byte in char.encode()) for char in text) + '"'


def compiler() -> str | None:
    """The C compiler to build the executable with ($CC, else cc or gcc), or None."""
    for candidate in (os.environ.get("CC"), "cc", "gcc"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def build_shim(output: str, interpreter: str, package_parent: str, state_dir: str, cc: str) -> None:
    """Compile dnsd/cni/shim.c into ``output``; OSError (its message: the compiler's) if it fails."""
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim.c")
    with tempfile.TemporaryDirectory() as scratch:
        header = os.path.join(scratch, "netcore_cni.h")
        with open(header, "w") as out:
            out.write(f"/* {MARKER} */\n"
                      f"#define NETCORE_CNI_STATE_DIR_DEFAULT {c_string(state_dir)}\n"
                      f"#define NETCORE_CNI_PYTHON {c_string(interpreter)}\n"
                      f"#define NETCORE_CNI_FALLBACK {c_string(fallback_code(package_parent, state_dir))}\n"
                      f"static const char netcore_cni_marker[] __attribute__((used)) = {c_string(MARKER)};\n")
        proc = subprocess.run([cc, "-O2", "-Wall", "-include", header, "-o", output, source],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise OSError(f"{cc} failed on {source}: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")


def install(directory: str, interpreter: str | None = None, state_dir: str = DEFAULT_STATE_DIR,
            python_only: bool = False) -> tuple[str, str]:
    """Write (or rewrite) DIR/netcore-dns by rename; returns (its path, "c" or "python").

    OSError if the directory cannot be written or the build fails; FileExistsError if a file of that
    name is not ours.
    """
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(dnsd.__file__)))
    interpreter = interpreter or sys.executable
    path = os.path.join(directory, PLUGIN_NAME)
    try:
        with open(path, "rb") as existing:
            if MARKER.encode() not in existing.read():
                raise FileExistsError(f"{path} exists and was not written by dnsd cni-install: not replaced")
    except FileNotFoundError:
        pass
    os.makedirs(directory, exist_ok=True)
    cc = None if python_only else compiler()
    if cc is None:
        write_atomically(path, script_text(interpreter, package_parent, state_dir), 0o755, durable=True)
        return path, "python"
    with replacing(path, durable=True) as temporary:  # installed: it must survive a power cut
        build_shim(temporary, interpreter, package_parent, state_dir, cc)
        os.chmod(temporary, 0o755)
    return path, "c"


def main(argv: list[str]) -> int:
    """The command: prints the path written and its kind; one line on stderr and exit 1 (2: usage) otherwise."""
    parser = OneLineParser(prog="dnsd cni-install", description="Write the netcore-dns CNI plugin executable.")
    parser.add_argument("directory", nargs="?", default=DEFAULT_DIR, help=f"CNI plugin directory ({DEFAULT_DIR})")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                        help=f"where the plugin and its dnsd keep their state ({DEFAULT_STATE_DIR})")
    parser.add_argument("--python-only", action="store_true", help="a Python script, even with a C compiler")
    args = parser.parse_args(argv)
    if not os.path.isabs(args.state_dir):
        parser.error(f"--state-dir must be an absolute path (got {args.state_dir!r})")
    try:
        path, kind = install(args.directory, state_dir=args.state_dir, python_only=args.python_only)
    except OSError as err:
        message = f"{err.strerror}: {err.filename}" if err.strerror and err.filename else str(err)
        print(f"dnsd cni-install: {message}", file=sys.stderr)
        return 1
    print(f"{path} ({'C executable' if kind == 'c' else 'Python script'})")
    return 0
