"""What installed files and running processes name of dnsd keeps working after dnsd was cut into layers (issue 25):
a ``netcore-dns`` executable an earlier ``dnsd cni-install`` wrote (``from dnsd.cni_plugin import main``), the
aardvark-dns helper ``dnsd podman-helper-dir`` wrote (``from dnsd.aardvark import main``), and the command lines
netcore starts and recognises (``python -m dnsd``, ``python -m dnsd.supervise``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from dnsd import aardvark
from dnsd.cni.install import MARKER

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the checkout

# the Python executable `dnsd cni-install --python-only` wrote before issue 25, word for word
OLD_CNI_SCRIPT = """\
#!{interpreter} -IS
# {marker}; the CNI plugin of dnsd (dnsd.cni_plugin), run by the CNI runtime.
import sys
sys.path.insert(0, {package_parent!r})
from dnsd.cni_plugin import main
sys.exit(main({state_dir!r}))
"""
# what the C executable it compiled runs with `python -I -S -c` when no dnsd takes the call
OLD_CNI_FALLBACK = ("import sys; sys.path.insert(0, {package_parent!r}); from dnsd.cni_plugin import main; "
                    "sys.exit(main({state_dir!r}))")


def version_of(argv: list[str]) -> dict:
    proc = subprocess.run(argv, input='{"cniVersion": "1.0.0"}', env={"CNI_COMMAND": "VERSION"},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_cni_plugin_installed_before_still_runs(tmp_path):
    script = tmp_path / "netcore-dns"
    script.write_text(OLD_CNI_SCRIPT.format(interpreter=sys.executable, marker=MARKER, package_parent=ROOT,
                                            state_dir=str(tmp_path / "state")))
    script.chmod(0o755)
    assert version_of([str(script)])["supportedVersions"][-1] == "1.1.0"
    fallback = OLD_CNI_FALLBACK.format(package_parent=ROOT, state_dir=str(tmp_path / "state"))
    assert version_of([sys.executable, "-I", "-S", "-c", fallback])["supportedVersions"][-1] == "1.1.0"


def test_the_aardvark_helper_runs_the_module_it_always_named(tmp_path):
    directory = aardvark.helper_dir(str(tmp_path / "helper"))
    with open(os.path.join(directory, aardvark.HELPER_NAME)) as helper:
        text = helper.read()
    assert "from dnsd.aardvark import main" in text
    proc = subprocess.run([os.path.join(directory, aardvark.HELPER_NAME), "version"], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0 and proc.stdout.startswith("aardvark-dns 1.4.0 (dnsd ")


def test_the_commands_netcore_starts_are_where_they_were(tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT}
    for module in ("dnsd", "dnsd.supervise"):
        proc = subprocess.run([sys.executable, "-m", module, "--state-dir", str(tmp_path / "none")],
                              capture_output=True, text=True, timeout=30, env=env)
        assert proc.returncode == 1 and proc.stderr == f"dnsd: state dir {tmp_path / 'none'} does not exist\n"
