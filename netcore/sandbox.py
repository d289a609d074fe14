"""A container's files and processes: /etc/netns/<ns>/{resolv.conf,hosts}, and running commands inside.

`ip netns exec` bind-mounts the files of /etc/netns/<ns>/ over /etc in a private
mount namespace; `run_in` does the same with setns(2), unshare(2) and mount(2),
so the command sees the container's resolv.conf and hosts.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from . import linux
from .errors import NetcoreError

ETC_NETNS = "/etc/netns"


def etc_dir(namespace: str) -> str:
    return os.path.join(ETC_NETNS, namespace)


def resolv_conf(nameservers: list[str]) -> str:
    lines = ["# written by netcore: the embedded DNS of each network this container joins"]
    lines += [f"nameserver {ns}" for ns in nameservers]
    lines.append("options ndots:0")
    return "\n".join(lines) + "\n"


def hosts_file(hostname: str, addresses: list[str]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{address}\t{hostname}" for address in addresses]
    return "\n".join(lines) + "\n"


def write_etc(namespace: str, resolv: str, hosts: str) -> None:
    """Write both files atomically (a reader never sees half a file)."""
    directory = etc_dir(namespace)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    for name, text in (("resolv.conf", resolv), ("hosts", hosts)):
        tmp = os.path.join(directory, f".{name}.tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(directory, name))


def remove_etc(namespace: str) -> None:
    shutil.rmtree(etc_dir(namespace), ignore_errors=True)


def _enter(namespace: str | None) -> None:
    """In the child, before exec: join the network namespace and see its /etc files."""
    if namespace is None:
        return
    fd = os.open(os.path.join("/run/netns", namespace), os.O_RDONLY)
    linux.setns(fd, linux.CLONE_NEWNET)
    os.close(fd)
    directory = etc_dir(namespace)
    if not os.path.isdir(directory):
        return
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", linux.MS_REC | linux.MS_SLAVE)
    for name in os.listdir(directory):
        target = os.path.join("/etc", name)
        if os.path.exists(target):
            linux.mount(os.path.join(directory, name), target, linux.MS_BIND)


def run_in(namespace: str | None, argv: list[str]) -> int:
    """Run ``argv`` inside ``namespace`` (None: the host's) and return its exit status, as a shell would."""
    if not argv:
        raise NetcoreError("no command given: use -- CMD [ARG...]")
    try:
        proc = subprocess.run(argv, preexec_fn=lambda: _enter(namespace))
    except FileNotFoundError:
        raise NetcoreError(f"command not found: {argv[0]}", exit_code=127) from None
    except PermissionError:
        raise NetcoreError(f"cannot run {argv[0]}: permission denied", exit_code=126) from None
    except subprocess.SubprocessError as err:
        raise NetcoreError(f"cannot enter the container's namespace {namespace}: {err}", exit_code=125) from None
    return 128 - proc.returncode if proc.returncode < 0 else proc.returncode  # killed by a signal: 128+N
