"""The compiled parts; everything else is in pyproject.toml. Both are optional: without a C compiler the
package still installs and behaves the same, only slower.

- dnsd.io._replay, a quiet UDP listener's loop (dnsd/io/_replay.c; issue 18); without it dnsd answers through
  Python's socket calls (dnsd.io.udp.serve).
- the `netcore` command as a native launcher (netcore/cli/launcher.c; issue 26), installed in place of the
  script scripts/netcore: it sends a command line to the running agent itself, ~1 ms where a Python process
  takes ~20, and becomes the Python client for everything else. Its constants come from the Python modules
  that hold them, read here with ``ast`` (nothing of netcore is imported to build it).
"""

import ast
import importlib
import os
import shutil
import subprocess
import sys
import tempfile

from setuptools import Extension, setup

# setuptools' own copy of distutils, which importing setuptools put in place of the standard library's
build_scripts = importlib.import_module("distutils.command.build_scripts").build_scripts

HERE = os.path.dirname(os.path.abspath(__file__))


def _constants(path: str, names: set[str]) -> dict:
    """The module-level constants ``names`` of the module at ``path`` (relative to here): literals, or sets
    written as ``frozenset({...})`` and ``NAME - {...}`` of such."""
    with open(os.path.join(HERE, path)) as f:
        tree = ast.parse(f.read())
    found: dict = {}

    def value(node):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "frozenset":
            return frozenset(ast.literal_eval(node.args[0]))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub):
            return value(node.left) - value(node.right)
        if isinstance(node, ast.Name):
            return found[node.id]
        return ast.literal_eval(node)

    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            try:
                found[name] = value(node.value)
            except (ValueError, KeyError, TypeError):
                continue
    return {name: found[name] for name in names}


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def build_launcher(output: str, python: str) -> bool:
    """Compile netcore/cli/launcher.c into ``output``, running ``python`` for the Python client; False (and a
    note) without a C compiler or when it fails."""
    cli = _constants("netcore/cli/__init__.py", {"LAUNCHER_COMMANDS", "NOT_AS_LINE", "CONTEXT_COMMANDS",
                                                 "DEFAULT_STATE_DIR"})
    wire = _constants("netcore/agent/protocol.py", {"PROTOCOL", "INTERRUPT", "GRACEFUL"})
    defines = {"NETCORE_PYTHON": _c_string(python), "NETCORE_PROTOCOL": str(int(wire["PROTOCOL"])),
               "NETCORE_INTERRUPT": _c_string(wire["INTERRUPT"].decode()),
               "NETCORE_GRACEFUL": _c_string(wire["GRACEFUL"] + "\n"),
               "NETCORE_COMMANDS": _c_string("|" + "|".join(sorted(cli["LAUNCHER_COMMANDS"])) + "|"),
               "NETCORE_NOT_SENT": _c_string("|" + "|".join(sorted(cli["NOT_AS_LINE"])) + "|"),
               "NETCORE_CONTEXT_COMMANDS": _c_string("|" + "|".join(sorted(cli["CONTEXT_COMMANDS"])) + "|"),
               "NETCORE_STATE_DIR_DEFAULT": _c_string(cli["DEFAULT_STATE_DIR"])}
    compiler = next((c for c in (os.environ.get("CC"), "cc", "gcc") if c and shutil.which(c)), None)
    if compiler is None:
        print("netcore: no C compiler: `netcore` is the Python script", file=sys.stderr)
        return False
    with tempfile.TemporaryDirectory() as work:
        header = os.path.join(work, "launcher.h")
        with open(header, "w") as f:
            f.writelines(f"#define {name} {value}\n" for name, value in defines.items())
        built = os.path.join(work, "netcore")
        done = subprocess.run([compiler, "-O2", "-Wall", "-Wextra", "-Werror", "-include", header, "-o", built,
                               os.path.join(HERE, "netcore", "cli", "launcher.c")], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"netcore: the launcher did not build, `netcore` is the Python script:\n{done.stderr}",
                  file=sys.stderr)
            return False
        shutil.copyfile(built, output)
    os.chmod(output, 0o755)
    return True


class BuildScripts(build_scripts):
    """scripts/netcore as setuptools builds it, then replaced by the native launcher where one builds. The
    launcher runs the Python client with the interpreter that runs this build: pip's, the environment's it
    installs into (build isolation changes the path, not the interpreter). A script's ``#!python`` line is
    rewritten by pip at install time; a program's cannot be."""

    def run(self):
        super().run()
        target = os.path.join(self.build_dir, "netcore")
        if os.path.exists(target):
            build_launcher(target, sys.executable)


if __name__ == "__main__":  # as setuptools runs it; bench/lifecycle.py imports it for build_launcher
    setup(ext_modules=[Extension("dnsd.io._replay", ["dnsd/io/_replay.c"], optional=True,
                                 extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror"])],
          cmdclass={"build_scripts": BuildScripts})
