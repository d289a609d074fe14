"""``--code DIR`` for the bench scripts that measure another checkout's code (udp_decisions.py, big_replies.py).

A bench script imports netcore, dnsd and tests.support as its interpreter finds them: `.venv/bin/python` finds
the checkout .venv was installed from (.ci/setup installs it editable, the checkout on sys.path). To measure
another checkout, put it first on PYTHONPATH: ``PYTHONPATH=DIR .venv/bin/python bench/SCRIPT``, the explicit
way to choose the code an interpreter imports, which every child process it starts inherits. ``--code DIR`` is
that, spelt as an option: the script runs again, the same command, with DIR first on PYTHONPATH.
"""

from __future__ import annotations

import os
import sys


def run_from(code: str | None) -> None:
    """Return when ``code`` is None or first on PYTHONPATH already; else run this command again with it there."""
    if code is None:
        return
    code = os.path.abspath(code)
    if not os.path.isdir(os.path.join(code, "dnsd")):
        sys.exit(f"--code {code}: not a checkout (no dnsd/ in it)")
    paths = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]
    if paths[:1] == [code]:
        return
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([code, *paths]))
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
