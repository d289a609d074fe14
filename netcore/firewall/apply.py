"""The I/O shell around netcore.nftables: runs ``nft`` in the gateway namespace, and switches on forwarding.

``namespace`` is a named network namespace (``/run/netns/NAME``, netcore's
sandbox mode) or None for the namespace netcore itself runs in (the host's).
``nft`` runs as a child that joins the namespace with setns(2) before exec,
as ``ip netns exec`` does, without its mount namespace work (nft reads no
/etc file here).

Every function raises ``NftError`` (a ``NetcoreError``, one line) when nft is
not installed, naming the package (``apt-get install nftables``), before
anything is changed; when the namespace does not exist; or when nft fails,
with nft's own message.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from netcore.errors import NetcoreError
from netcore.firewall import FirewallState
from netcore.firewall.monitor import NftMonitor
from netcore.firewall.nftables import TABLE, Ruleset, normalize_listing, render
from netcore.system import linux

NFT_SEARCH_PATH = os.pathsep.join(filter(None, [os.environ.get("PATH"), "/usr/sbin", "/sbin"]))
INSTALL_HINT = "nftables is not installed (no nft command): install it with `apt-get install nftables`"
TIMEOUT = 30.0

CURRENT = "current"  # the live table is the rendered one
MISSING = "missing"  # no netcore table (first run, `nft flush ruleset`, deleted by hand)
DIFFERENT = "different"  # a netcore table that is not the rendered one (edited, flushed, an older rendering)


class NftError(NetcoreError):
    """nft is missing, the namespace is gone, or nft refused or failed a command."""


def nft_path() -> str:
    """The nft executable (PATH, then /usr/sbin and /sbin, where Debian puts it); NftError if there is none."""
    found = shutil.which("nft", path=NFT_SEARCH_PATH)
    if not found:
        raise NftError(INSTALL_HINT)
    return found


def _namespace_path(namespace: str | None) -> str | None:
    if namespace is None:
        return None
    path = linux.netns_path(namespace)
    if not os.path.exists(path):
        raise NftError(f"network namespace {namespace} does not exist")
    return path


def _enter(namespace: str | None):
    def enter() -> None:  # in the child, between fork and exec
        if namespace is not None:
            linux.enter_netns(namespace)
    return enter


def _one_line(text: str) -> str:
    """nft's error output (the message, then the offending line and a caret line) as one line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "Error:" in line]
    return "; ".join(errors or lines) or "no message"


def run_nft(namespace: str | None, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    """``nft ARGS...`` inside ``namespace``, its output captured as text; the caller reads returncode."""
    nft = nft_path()
    _namespace_path(namespace)  # NftError if it is gone
    try:
        return subprocess.run([nft, *args], input=stdin, capture_output=True, text=True, timeout=TIMEOUT, check=False,
                              preexec_fn=_enter(namespace))
    except FileNotFoundError:
        raise NftError(INSTALL_HINT) from None
    except subprocess.TimeoutExpired:
        raise NftError(f"nft {' '.join(args)} did not finish within {TIMEOUT:.0f} s") from None
    except (OSError, subprocess.SubprocessError) as err:
        raise NftError(f"cannot run nft in namespace {namespace or '(host)'}: {err}") from None


def _where(namespace: str | None) -> str:
    return f" in namespace {namespace}" if namespace else ""


def apply(ruleset: Ruleset | str, namespace: str | None) -> None:
    """Replace netcore's table with ``ruleset`` (a ``Ruleset`` or its script) in one nft transaction.

    An empty rendering deletes the table. Raises NftError with nft's message if nft rejects the
    script; the transaction is then not applied, so the table stays as it was.
    """
    script = ruleset.script if isinstance(ruleset, Ruleset) else ruleset
    proc = run_nft(namespace, ["-f", "-"], stdin=script)
    if proc.returncode != 0:
        raise NftError(f"nft rejected netcore's ruleset{_where(namespace)}: {_one_line(proc.stderr)}")


def check(ruleset: Ruleset | str, namespace: str | None) -> None:
    """``nft --check``: parse and validate the script against the kernel without committing anything.
    Raises NftError with nft's message if it would be rejected."""
    script = ruleset.script if isinstance(ruleset, Ruleset) else ruleset
    proc = run_nft(namespace, ["--check", "-f", "-"], stdin=script)
    if proc.returncode != 0:
        raise NftError(f"nft rejects netcore's ruleset{_where(namespace)}: {_one_line(proc.stderr)}")


def live_table(namespace: str | None) -> str | None:
    """``nft list table inet netcore`` as nft prints it, or None when there is no such table."""
    proc = run_nft(namespace, ["list", "table", *TABLE.split()])
    if proc.returncode == 0:
        return proc.stdout
    if "No such file or directory" in proc.stderr:
        return None
    raise NftError(f"cannot list netcore's table{_where(namespace)}: {_one_line(proc.stderr)}")


def status(ruleset: Ruleset, namespace: str | None) -> str:
    """``CURRENT``, ``MISSING`` or ``DIFFERENT``: the live table compared with the rendered one.

    The comparison is of nft's own listing with the rendered text, both through
    ``normalize_listing`` (counters, whitespace, element order), so any change to a rule, chain or
    map element is seen. For an empty rendering, ``CURRENT`` means there is no table. A different
    nft release that prints some expression differently makes every check ``DIFFERENT``: each
    command then re-applies the same ruleset once, which is correct, only one nft run dearer.
    """
    live = live_table(namespace)
    if ruleset.empty:
        return CURRENT if live is None else DIFFERENT
    if live is None:
        return MISSING
    return CURRENT if normalize_listing(live) == normalize_listing(ruleset.table) else DIFFERENT


def ensure(ruleset: Ruleset, namespace: str | None) -> str:
    """Make the live table the rendered one: applies ``ruleset`` unless ``status`` is already ``CURRENT``.

    Returns the status found before (``CURRENT``: nothing done), so the caller can say on stderr that
    a missing or changed table was put back. Raises NftError as ``apply`` does.
    """
    found = status(ruleset, namespace)
    if found != CURRENT:
        apply(ruleset, namespace)
    return found


def delete(namespace: str | None) -> None:
    """Remove netcore's table, whether or not it exists (add-then-delete in one transaction)."""
    proc = run_nft(namespace, ["-f", "-"], stdin=f"table {TABLE} {{}}\ndelete table {TABLE}\n")
    if proc.returncode != 0:
        raise NftError(f"cannot delete netcore's table{_where(namespace)}: {_one_line(proc.stderr)}")


FORWARDING_V4 = "/proc/sys/net/ipv4/ip_forward"
FORWARDING_V6 = "/proc/sys/net/ipv6/conf/all/forwarding"


def enable_forwarding(namespace: str | None, ipv6: bool = False) -> bool:
    """Switch on IPv4 forwarding (``net.ipv4.ip_forward``) and, with ``ipv6``, IPv6 forwarding
    (``net.ipv6.conf.all.forwarding``) in ``namespace``; never switches either off.

    Returns True if a setting changed, so the caller can say so once on stderr (Docker and netavark
    set both on the same way). Note for the host namespace: with IPv6 forwarding on, an interface
    with ``accept_ra=1`` stops taking router advertisements, so an uplink configured by SLAAC needs
    ``accept_ra=2`` (Docker documents the same). Raises NftError if the namespace is gone or a
    setting cannot be written.
    """
    path = _namespace_path(namespace)
    settings = [FORWARDING_V4] + ([FORWARDING_V6] if ipv6 else [])
    try:
        if path is None:
            return _set_all(settings)
        with linux.entered_netns(path):  # /proc/sys/net is the opening thread's namespace
            return _set_all(settings)
    except OSError as err:
        raise NftError(f"cannot switch on forwarding{_where(namespace)}: {err}") from None


def _set_all(settings: list[str]) -> bool:
    changed = False
    for setting in settings:
        with open(setting) as f:
            if f.read().strip() == "1":
                continue
        with open(setting, "w") as f:
            f.write("1\n")
        changed = True
    return changed


ROUTE_LOCALNET = "/proc/sys/net/ipv4/conf/{}/route_localnet"


def set_route_localnet(namespace: str | None, wanted: dict[str, bool]) -> None:
    """Make ``net.ipv4.conf.BRIDGE.route_localnet`` of each bridge in ``wanted`` what it says (writes only
    what differs; a bridge that is gone is skipped). netcore owns its bridges' setting: on where the host
    reaches a published port through 127.0.0.1 (the DNATed packet keeps its loopback source until it is
    masqueraded on the way out, and the kernel routes 127.0.0.0/8 off loopback only with this on, as
    netavark sets it), off everywhere else. NftError if a setting cannot be written."""
    def write_all() -> None:
        for bridge, on in wanted.items():
            path = ROUTE_LOCALNET.format(bridge)
            try:
                with open(path) as f:
                    if (f.read().strip() == "1") == on:
                        continue
                with open(path, "w") as f:
                    f.write("1\n" if on else "0\n")
            except FileNotFoundError:
                continue
    try:
        path = _namespace_path(namespace)
        if path is None:
            write_all()
        else:
            with linux.entered_netns(path):
                write_all()
    except OSError as err:
        raise NftError(f"cannot set route_localnet{_where(namespace)}: {err}") from None


class NftablesFirewall:
    """netcore's firewall (``netcore.firewall.Firewall``) on nftables: one ``inet netcore`` table in the
    gateway namespace (``namespace``; None: the host's), rendered whole by ``netcore.nftables``.

    ``apply`` commits only what changed (issue 26: an action that does not change the rendering commits no
    nftables transaction): a rendering other than the one it applied last is applied in one nft
    transaction, without reading the live table; the same one is left alone unless nftables changed in the
    gateway namespace since (``NftMonitor``: somebody flushed or edited it), and then put back only if the
    live table differs (one ``nft list``). ``force`` (``netcore firewall-reload``) applies whatever the live
    table looks like. It switches on forwarding when a network needs it (a notice the first
    time, as it changes a setting of the namespace), and raises NftError (one line)
    when nft is missing or rejects the ruleset. On this machine one nft transaction costs 15-20 ms whatever
    its size (the kernel's commit), which is most of the firewall's share of an action
    (``bench/firewall.py``).
    """

    def __init__(self, namespace: str | None):
        self.namespace = namespace
        self.monitor = NftMonitor(namespace)
        self._applied: str | None = None  # the script this object applied last (None: none yet)
        # the last state rendered, and its rendering: a run without -p on an existing network leaves the state
        # as it was, and its render (~0.25 ms at one network) would be paid once a container of an up of 100
        self._rendered: tuple[FirewallState, Ruleset] | None = None

    def changed_outside(self) -> bool:
        """Whether nftables changed in the gateway namespace since this object's last apply (or never
        applied): the next ``apply`` then looks at the live table."""
        changed = self.monitor.changed()
        if changed:
            self._applied = None
        return changed

    def check_ready(self) -> None:
        """NftError naming the package to install when there is no nft; nothing is changed."""
        nft_path()

    def apply(self, desired: FirewallState, force: bool = False) -> list[str]:
        """Make the live table ``desired``: replace it (``force``), apply a rendering that changed, or put the
        same one back only if nftables changed since and the live table differs."""
        if self._rendered is not None and self._rendered[0] == desired:
            ruleset = self._rendered[1]  # render is a pure function of the state
        else:
            ruleset = render(desired)
            self._rendered = (desired, ruleset)
        if not force and ruleset.script == self._applied and not self.changed_outside():
            return []  # the rendering this object applied, and nobody touched nftables since
        if self.namespace is not None and not os.path.exists(linux.netns_path(self.namespace)):
            if ruleset.empty:
                return []  # no gateway namespace, nothing to hold: nothing to do (purge of a fresh state dir)
            raise NftError(f"network namespace {self.namespace} does not exist")
        notices = []
        routed = [network for network in desired.networks if not network.internal]
        ipv6 = any(network.subnet6 for network in routed)
        if routed and enable_forwarding(self.namespace, ipv6=ipv6):
            settings = "net.ipv4.ip_forward" + (" and net.ipv6.conf.all.forwarding" if ipv6 else "")
            notices.append(f"switched on {settings}{_where(self.namespace) or ' on this host'}: "
                           "containers' traffic is routed through it (as Docker and Podman do)")
        known = self._applied is not None  # the live table is the rendering applied last (nobody changed it)
        self._applied = None  # until the new one is known to be live
        if force or known:
            apply(ruleset, self.namespace)  # a rendering that changed: one transaction, nothing listed first
        else:
            ensure(ruleset, self.namespace)  # a first look, or changed outside: put back only if it differs
        self.monitor.drain()  # what this commit sent: a message after this one is somebody else's change
        localnet = {mapping.bridge for mapping in desired.ports if mapping.reaches_loopback}
        set_route_localnet(self.namespace, {n.bridge: n.bridge in localnet for n in desired.networks})
        self._applied = ruleset.script
        return notices
