"""``netcore-dns``: dnsd as a chained CNI plugin, for every CNI runtime (issue 29).

Placed after ``bridge`` (with an IPAM such as ``host-local``) in a network's
conflist, where Podman's CNI backend placed ``dnsname``. The contract is the
CNI specification's (containernetworking/cni ``SPEC.md``, 1.0.0 and 1.1.0;
configurations of 0.3.0 to 0.4.0 are answered too): the runtime runs the
plugin once per operation with ``CNI_*`` environment variables and the
network's plugin configuration on stdin, and reads one JSON document from
stdout.

* ``ADD`` registers the attachment (``dnsd.sources.cni_store``): the container's name
  from ``CNI_ARGS`` (``K8S_POD_NAME``, which Podman's CNI backend and the CRI
  runtimes set), its hostname (``NERDCTL_CNI_DHCP_HOSTNAME``, which nerdctl
  sets), its aliases from the ``aliases`` capability (``runtimeConfig.aliases``:
  Podman's map of network name to names, or the conventions' plain list), its
  addresses, gateways and subnets from ``prevResult``'s ``ips`` on the
  container's interfaces. It then has dnsd (``dnsd --cni``, one per state dir,
  started by the first ADD under ``dnsd.supervise``) serve the new records and
  the gateway addresses, and returns only once dnsd answers them
  (read-your-writes). It outputs ``prevResult`` with the gateways first in
  ``dns.nameservers`` (and ``domainName``, if configured, in ``dns.search``).
* ``DEL`` removes the registration; it succeeds for an attachment never
  registered, a second time, and without ``prevResult``. After the last
  registration dnsd is stopped.
* ``CHECK`` asks dnsd, on the gateway, for the container's name and fails
  unless every registered address comes back.
* ``STATUS`` (1.1.0) fails (code 50) when the state dir cannot be used, and
  (51) when containers are registered and no dnsd answers; ``GC`` (1.1.0)
  drops the registrations of the network not listed in
  ``cni.dev/valid-attachments``; ``VERSION`` lists ``SUPPORTED_VERSIONS``.

Errors are the spec's error document on stdout (``cniVersion``, ``code``,
``msg``, ``details``) and exit status 1; nothing is registered by an ADD that
fails. The plugin configuration's own key: ``domainName`` (dnsname's: names
are also answered as ``NAME.DOMAIN``, and the domain goes into ``dns.search``).
The state dir (the registrations, dnsd's sockets, pid files and log) is the
installation's (``dnsd cni-install --state-dir``, default ``DEFAULT_STATE_DIR``),
or ``$NETCORE_CNI_STATE_DIR`` if the runtime's environment sets it.

Where this code runs: inside dnsd, for the calls the ``netcore-dns``
executable hands it (``dnsd.cni.service``), and in a process of its own
(``main``) for the others: the first ADD, which starts dnsd, and any call
while no dnsd takes them. That process imports only ``json``, ``os``, ``sys``,
``socket``, ``fcntl``, ``contextlib``, ``time`` and what ``dnsd.sources.cni_store`` and
``netcore.dnsd_protocol`` import (``sqlite3``); starting and stopping dnsd and
CHECK's DNS query load more, on those calls only.

Concurrency: runtimes call plugins in parallel for different containers. The
store serialises the writes; a lock file orders dnsd's start and stop: ADD and
the DELs that leave registrations hold it shared from their write until dnsd
confirmed, a DEL that leaves none takes it exclusively, counts again and only
then stops dnsd, so an ADD is never left with a dnsd stopping under it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time

import dnsd
from dnsd.sources.cni_store import Attachment, Registrations, StoreError, namespace_id
from netcore import dnsd_protocol
from netcore.dnsd_protocol import ERROR, PING, REPLY_TIMEOUT, SOCKET_NAME, SYNC, parse_sync_reply

PLUGIN_NAME = "netcore-dns"
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")  # results of 0.3.0 on have ips/interfaces
LATEST = SUPPORTED_VERSIONS[-1]
DEFAULT_STATE_DIR = "/run/netcore-cni"  # a tmpfs: nothing registered outlives a reboot, as no namespace does
STATE_DIR_ENV = "NETCORE_CNI_STATE_DIR"
LOCK_NAME = "cni.lock"
DEFAULT_BRIDGE = "bridge"  # netcore.model.DEFAULT_BRIDGE: the name of Docker's (and nerdctl's) nameless network
NAME_ARG = "K8S_POD_NAME"  # Podman's CNI backend (containers/common libnetwork/cni), CRI-O, containerd's CRI
HOSTNAME_ARG = "NERDCTL_CNI_DHCP_HOSTNAME"  # nerdctl

# error codes, CNI SPEC.md section 5 "Error"; 100 and up are this plugin's
INCOMPATIBLE_VERSION = 1
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
NOT_AVAILABLE = 50  # STATUS, and an ADD dnsd cannot serve
LIMITED_CONNECTIVITY = 51  # STATUS: containers registered, dnsd not answering
NAME_NOT_ANSWERED = 100  # CHECK: dnsd does not answer the container's name with its addresses

COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")


class CniError(Exception):
    """An error the runtime gets as the spec's error document: ``code``, ``msg`` (short), ``details``."""

    def __init__(self, code: int, msg: str, details: str = ""):
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details


class Request:
    """One call as the runtime made it: ``command``, the ``CNI_*`` parameters, ``config`` (the JSON object
    on stdin), and what this plugin takes from it: ``version``, ``network``, ``cni_args`` (CNI_ARGS as a dict)."""

    __slots__ = ("command", "container_id", "netns", "ifname", "cni_args", "config", "version", "network")

    def __init__(self, command: str, container_id: str, netns: str, ifname: str, cni_args: dict[str, str],
                 config: dict, version: str, network: str):
        self.command = command
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.cni_args = cni_args
        self.config = config
        self.version = version
        self.network = network


# -- the request: pure ------------------------------------------------------------------------------------------

def _valid_identifier(text: str) -> bool:
    """SPEC.md's rule for container IDs and network names: an alphanumeric, then alphanumerics, ``_``, ``.``, ``-``."""
    return bool(text) and text[0].isascii() and text[0].isalnum() and all(
        char.isascii() and (char.isalnum() or char in "_.-") for char in text)


def parse_cni_args(text: str) -> dict[str, str]:
    """``CNI_ARGS`` (``K=V;K2=V2``) as a dict; CniError (code 4) for a pair without ``=``. Unknown keys are
    kept and ignored, whatever ``IgnoreUnknown`` says (this plugin reads only the ones it knows)."""
    args = {}
    for pair in text.split(";"):
        if not pair:
            continue
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise CniError(INVALID_ENVIRONMENT, "invalid CNI_ARGS", f"CNI_ARGS: pair {pair[:60]!r} is not KEY=VALUE")
        args[key] = value
    return args


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.0.0"`` → (1, 0, 0); (0,) for text that is no version."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


def read_request(environ: dict[str, str], stdin: bytes) -> Request:
    """Check the call's environment and configuration (CniError with the spec's code if they are wrong)."""
    command = environ.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CniError(INVALID_ENVIRONMENT, "invalid CNI_COMMAND",
                       f"CNI_COMMAND {command[:20]!r}: expected one of {', '.join(COMMANDS)}" if command
                       else "CNI_COMMAND is not set")
    try:
        config = json.loads(stdin or b"{}") if command == "VERSION" else json.loads(stdin)
    except (ValueError, UnicodeDecodeError) as err:
        raise CniError(DECODE_FAILURE, "cannot decode the network configuration", str(err)) from None
    if not isinstance(config, dict):
        raise CniError(DECODE_FAILURE, "cannot decode the network configuration", "stdin is not a JSON object")
    if command == "VERSION":  # libcni sends {"cniVersion": ...}; answered whatever it holds
        version = config.get("cniVersion")
        return Request(command, "", "", "", {}, config, version if isinstance(version, str) and version else LATEST, "")
    version = config.get("cniVersion", "0.1.0")  # as libcni's decoder: no cniVersion is 0.1.0
    if not isinstance(version, str):
        raise CniError(DECODE_FAILURE, "cannot decode the network configuration", "cniVersion is not a string")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, "incompatible CNI version",
                       f"cniVersion {version[:20]!r}: {PLUGIN_NAME} supports {', '.join(SUPPORTED_VERSIONS)}")
    needs = {"ADD": ("0.3.0", ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME")),
             "CHECK": ("0.4.0", ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME")),
             "DEL": ("0.3.0", ("CNI_CONTAINERID", "CNI_IFNAME")),
             "STATUS": ("1.1.0", ()), "GC": ("1.1.0", ())}
    since, required = needs[command]
    if version_tuple(version) < version_tuple(since):
        raise CniError(INCOMPATIBLE_VERSION, "incompatible CNI version",
                       f"{command} needs cniVersion {since} or later, the configuration is {version}")
    missing = [name for name in required if not environ.get(name)]
    if missing:
        raise CniError(INVALID_ENVIRONMENT, "missing environment variables", f"{', '.join(missing)} not set")
    container_id = environ.get("CNI_CONTAINERID", "")
    if required and not _valid_identifier(container_id):
        raise CniError(INVALID_ENVIRONMENT, "invalid CNI_CONTAINERID",
                       f"CNI_CONTAINERID {container_id[:80]!r}: an alphanumeric, then alphanumerics, '_', '.' or '-'")
    ifname = environ.get("CNI_IFNAME", "")
    if required and (len(ifname) > 15 or "/" in ifname or ":" in ifname or ifname in (".", "..")
                     or any(char.isspace() for char in ifname)):
        raise CniError(INVALID_ENVIRONMENT, "invalid CNI_IFNAME", f"CNI_IFNAME {ifname[:40]!r} is no interface name")
    network = config.get("name")
    if not isinstance(network, str) or not _valid_identifier(network):
        raise CniError(INVALID_CONFIG, "invalid network configuration",
                       f"name {network!r}: an alphanumeric, then alphanumerics, '_', '.' or '-'" if network
                       else "the configuration has no network name")
    if not isinstance(config.get("domainName", ""), str):
        raise CniError(INVALID_CONFIG, "invalid network configuration", "domainName must be a string")
    cni_args = parse_cni_args(environ.get("CNI_ARGS", ""))
    return Request(command, container_id, environ.get("CNI_NETNS", ""), ifname, cni_args, config, version, network)


def _address(text: object, what: str) -> str:
    """A normalised IP address; CniError (7) naming ``what`` if ``text`` is none."""
    if isinstance(text, str):
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                return socket.inet_ntop(family, socket.inet_pton(family, text))
            except OSError:
                continue
    raise CniError(INVALID_CONFIG, "invalid prevResult", f"{what} {text!r} is no IP address")


def _cidr(text: object) -> tuple[str, str]:
    """``"10.88.0.5/24"`` → ("10.88.0.5", "10.88.0.5/24") normalised; CniError (7) if it is no address/prefix."""
    address, slash, prefix = text.partition("/") if isinstance(text, str) else ("", "", "")
    address = _address(address, "ips address") if slash else _address(text, "ips address (no prefix length)")
    if not (prefix.isdigit() and int(prefix) <= (128 if ":" in address else 32)):
        raise CniError(INVALID_CONFIG, "invalid prevResult", f"ips address {text!r}: bad prefix length")
    return address, f"{address}/{int(prefix)}"


def _aliases(request: Request) -> tuple[str, ...]:
    """The ``aliases`` capability: Podman's ``{network: [names]}`` or the conventions' ``[names]``."""
    runtime = request.config.get("runtimeConfig") or {}
    if not isinstance(runtime, dict):
        raise CniError(INVALID_CONFIG, "invalid network configuration", "runtimeConfig is not an object")
    aliases = runtime.get("aliases") or []
    if isinstance(aliases, dict):
        aliases = aliases.get(request.network) or []
    if not isinstance(aliases, list) or not all(isinstance(alias, str) for alias in aliases):
        raise CniError(INVALID_CONFIG, "invalid network configuration",
                       "runtimeConfig.aliases: expected a list of names or an object of lists by network name")
    return tuple(dict.fromkeys(alias for alias in aliases if alias))


def attachment_of(request: Request, netns_id: str = "") -> Attachment:
    """What ADD registers (pure): CniError (7) without a usable ``prevResult`` (chained after an interface
    plugin that reports the container's addresses and their gateway), or on Docker's nameless ``bridge``."""
    previous = request.config.get("prevResult")
    if previous is None:
        raise CniError(INVALID_CONFIG, "missing prevResult",
                       f"{PLUGIN_NAME} is a chained plugin: place it after bridge (with its ipam) in the conflist")
    if not isinstance(previous, dict) or not isinstance(previous.get("ips", []), list) \
            or not isinstance(previous.get("interfaces", []), list):
        raise CniError(INVALID_CONFIG, "invalid prevResult",
                       "prevResult must be an object with lists ips and interfaces")
    if request.network == DEFAULT_BRIDGE:
        raise CniError(INVALID_CONFIG, "invalid network configuration",
                       f"the network named {DEFAULT_BRIDGE!r} is Docker's default network, which has no names: "
                       "give the network another name")
    interfaces = previous.get("interfaces") or []
    ipv4, ipv6, gateways, subnets = [], [], [], []
    for ip in previous.get("ips") or []:
        if not isinstance(ip, dict):
            raise CniError(INVALID_CONFIG, "invalid prevResult", "an ips entry is not an object")
        index = ip.get("interface")
        if isinstance(index, int) and 0 <= index < len(interfaces) and isinstance(interfaces[index], dict) \
                and not interfaces[index].get("sandbox"):
            continue  # an address on a host-side interface (the bridge's): not the container's
        address, cidr = _cidr(ip.get("address"))
        (ipv6 if ":" in address else ipv4).append(address)
        subnets.append(cidr)
        if ip.get("gateway"):
            gateway = _address(ip["gateway"], "ips gateway")
            if gateway not in gateways:
                gateways.append(gateway)
    if not ipv4 and not ipv6:
        raise CniError(INVALID_CONFIG, "invalid prevResult", "prevResult has no address of the container")
    if not gateways:
        raise CniError(INVALID_CONFIG, "invalid prevResult",
                       "prevResult names no gateway for dnsd to serve on: use bridge with isGateway true")
    args = request.cni_args
    return Attachment(request.container_id, request.ifname, request.network, name=args.get(NAME_ARG, ""),
                      hostname=args.get(HOSTNAME_ARG, ""), aliases=_aliases(request), ipv4=tuple(ipv4),
                      ipv6=tuple(ipv6), gateways=tuple(gateways), subnets=tuple(subnets),
                      domain=request.config.get("domainName", ""), netns=request.netns, netns_id=netns_id)


def add_result(request: Request, attachment: Attachment) -> dict:
    """ADD's output: ``prevResult`` passed on, the gateways first in ``dns.nameservers`` (as dnsname put its
    dnsmasq first), ``domainName`` added to ``dns.search``, in the configuration's ``cniVersion``."""
    result = dict(request.config["prevResult"])
    result["cniVersion"] = request.version
    dns = dict(result.get("dns") or {})
    dns["nameservers"] = [*attachment.gateways,
                          *(server for server in dns.get("nameservers") or () if server not in attachment.gateways)]
    if attachment.domain and attachment.domain not in (dns.get("search") or ()):
        dns["search"] = [*(dns.get("search") or ()), attachment.domain]
    result["dns"] = dns
    return result


def version_result(request: Request) -> dict:
    """VERSION's output."""
    return {"cniVersion": request.version, "supportedVersions": list(SUPPORTED_VERSIONS)}


def error_result(version: str, error: CniError) -> dict:
    """The spec's error document."""
    return {"cniVersion": version, "code": error.code, "msg": error.msg, "details": error.details}


# -- dnsd: the control socket, started and stopped as registrations come and go ---------------------------------

class Dnsd:
    """The dnsd serving a state dir (``dnsd --cni``), seen from a plugin process: its control socket.

    dnsd itself runs the same commands for the requests it takes on its CNI socket
    (``dnsd.cni.service``), with an object of its own in place of this one.
    """

    def __init__(self, state_dir: str):
        self.state_dir = state_dir
        self.socket_path = os.path.join(state_dir, SOCKET_NAME)

    def request(self, command: str, timeout: float = REPLY_TIMEOUT) -> str | None:
        """One line in, one line out; None when no dnsd answers (netcore.dnsd_protocol.request)."""
        return dnsd_protocol.request(self.socket_path, command, timeout)

    def _control(self):
        """netcore's dnsd control for this state dir, starting ``dnsd --cni`` from this plugin's package."""
        from netcore.dnsd_protocol.control import DnsdControl  # subprocess and friends: loaded only to start or stop

        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(dnsd.__file__)))
        path = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = package_parent + (os.pathsep + path if path else "")
        os.environ.pop("NETCORE_NETNS", None)  # dnsd serves the namespace the runtime runs the plugin in
        return DnsdControl(self.state_dir, None, dnsd_args=("--cni",))

    def sync(self) -> dict[str, str]:
        """Have dnsd serve the registrations as committed, starting it if none runs; {gateway: why it is not
        served} for the listeners that are down. CniError (50) if dnsd cannot be started or does not confirm."""
        reply = self.request(SYNC)
        if reply is None:
            self._start()
            reply = self.request(SYNC)
        try:
            return parse_sync_reply(reply or "")[1]
        except ValueError:
            details = reply[len(ERROR):].strip() if reply and reply.startswith(ERROR) else f"reply {reply!r:.80}"
            raise CniError(NOT_AVAILABLE, "dnsd did not confirm the change", details) from None

    def _start(self) -> None:
        """Start dnsd; first wait for a supervisor whose dnsd answers no more (one stopping after the last
        DEL holds the supervisor's lock until it is gone). CniError (50) if dnsd does not come up."""
        from netcore.dnsd_protocol import STOP_TIMEOUT
        from netcore.errors import NetcoreError

        control = self._control()
        deadline = time.monotonic() + STOP_TIMEOUT
        while control.supervisor_pid() is not None and control.status() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if control.status() is not None:
            return  # a dnsd came up meanwhile (the supervisor's restart of one that died)
        try:
            control.start()
        except NetcoreError as err:
            raise CniError(NOT_AVAILABLE, "dnsd is not available", str(err)) from None

    def running(self) -> bool:
        return self.request(PING, timeout=2.0) is not None

    def stop(self) -> None:
        """Stop the dnsd of this state dir and its supervisor, if one runs (called with the lock held exclusively)."""
        if self.running() or os.path.exists(self.socket_path):
            self._control().stop()


class _Lock:
    """``flock`` on STATE_DIR/cni.lock, shared or exclusive; the kernel drops it with a killed plugin."""

    def __init__(self, state_dir: str):
        old_umask = os.umask(0o077)
        try:
            self._fd = os.open(os.path.join(state_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        finally:
            os.umask(old_umask)

    def shared(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def exclusive(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


# -- the commands: each given the dnsd to keep in step ----------------------------------------------------------

def _open(state_dir: str) -> Registrations:
    try:
        return Registrations(state_dir)
    except StoreError as err:
        raise CniError(IO_FAILURE, "cannot open the registrations", str(err)) from None


def cmd_add(request: Request, dnsd: Dnsd) -> dict:
    """ADD (see the module's docstring); the result to print."""
    attachment = attachment_of(request, namespace_id(request.netns))
    store = _open(dnsd.state_dir)
    lock = _Lock(dnsd.state_dir)
    try:
        lock.shared()
        try:
            store.add(attachment)
        except StoreError as err:
            raise CniError(IO_FAILURE, "cannot register the container", str(err)) from None
        try:
            down = dnsd.sync()
            unserved = {gateway: down[gateway] for gateway in attachment.gateways if gateway in down}
            if unserved:
                raise CniError(NOT_AVAILABLE, "dnsd cannot serve the network's gateway", "; ".join(unserved.values()))
        except CniError:
            _undo(store, attachment, dnsd)
            raise
    finally:
        lock.close()  # releases the lock
        store.close()
    return add_result(request, attachment)


def _undo(store: Registrations, attachment: Attachment, dnsd: Dnsd) -> None:
    """Take a failed ADD's registration back (the lock is held shared), and tell dnsd if it runs."""
    try:
        store.remove(attachment.container_id, attachment.ifname, attachment.network)
    except StoreError as err:
        print(f"{PLUGIN_NAME}: could not take the registration back: {err}", file=sys.stderr)
    if dnsd.running():
        with contextlib.suppress(CniError):
            dnsd.sync()


def _remove_then_sync_or_stop(store: Registrations, lock: _Lock, dnsd: Dnsd, remove) -> None:
    """``remove()`` (a store write returning the rows left) under the shared lock; then dnsd synced, or,
    with none left, stopped: under the exclusive lock, once every ADD under way has finished, and only if
    none came in between."""
    lock.shared()
    try:
        remaining = remove()
    except StoreError as err:
        raise CniError(IO_FAILURE, "cannot remove the registration", str(err)) from None
    if remaining:
        _sync_best_effort(dnsd)
        return
    lock.release()
    lock.exclusive()
    try:
        remaining = store.sweep()
    except StoreError as err:
        print(f"{PLUGIN_NAME}: {err}", file=sys.stderr)
        return
    if remaining:
        _sync_best_effort(dnsd)
    else:
        dnsd.stop()


def cmd_del(request: Request, dnsd: Dnsd) -> None:
    """DEL: best effort, as the spec asks; only a store that cannot be written fails it."""
    if not os.path.isdir(dnsd.state_dir):
        return  # nothing was ever registered here
    store = _open(dnsd.state_dir)
    lock = _Lock(dnsd.state_dir)
    try:
        _remove_then_sync_or_stop(store, lock, dnsd,
                                  lambda: store.remove(request.container_id, request.ifname, request.network))
    finally:
        lock.close()
        store.close()


def _sync_best_effort(dnsd: Dnsd) -> None:
    try:
        dnsd.sync()
    except CniError as err:
        print(f"{PLUGIN_NAME}: {err.msg}: {err.details}", file=sys.stderr)


def cmd_gc(request: Request, dnsd: Dnsd) -> None:
    """GC (1.1.0): drop this network's registrations whose attachment the runtime no longer lists."""
    valid_list = request.config.get("cni.dev/valid-attachments") or []
    if not isinstance(valid_list, list) or not all(isinstance(item, dict) for item in valid_list):
        raise CniError(INVALID_CONFIG, "invalid network configuration", "cni.dev/valid-attachments is not a list")
    valid = {(str(item.get("containerID", "")), str(item.get("ifname", ""))) for item in valid_list}
    if not os.path.isdir(dnsd.state_dir):
        return
    store = _open(dnsd.state_dir)
    lock = _Lock(dnsd.state_dir)
    try:
        _remove_then_sync_or_stop(store, lock, dnsd, lambda: store.keep_only(request.network, valid))
    finally:
        lock.close()
        store.close()


def cmd_status(request: Request, dnsd: Dnsd) -> None:
    """STATUS (1.1.0): ready to serve ADD, or why not."""
    try:
        store = Registrations(dnsd.state_dir)
    except StoreError as err:
        raise CniError(NOT_AVAILABLE, "the registrations cannot be used", str(err)) from None
    try:
        registered = bool(store.attachments())
    except StoreError as err:
        raise CniError(NOT_AVAILABLE, "the registrations cannot be read", str(err)) from None
    finally:
        store.close()
    if registered and not dnsd.running():
        raise CniError(LIMITED_CONNECTIVITY, "dnsd is not running",
                       f"containers are registered in {dnsd.state_dir} and no dnsd answers; the next ADD starts one")


def cmd_check(request: Request, dnsd: Dnsd) -> None:
    """CHECK: the attachment is registered, and dnsd answers its name on the gateway with all its addresses."""
    if request.config.get("prevResult") is None:
        raise CniError(INVALID_CONFIG, "missing prevResult", "CHECK needs the prevResult of the ADD")
    expected = attachment_of(request)
    state_dir = dnsd.state_dir
    store = _open(state_dir) if os.path.isdir(state_dir) else None
    try:
        registered = store.find(request.container_id, request.ifname, request.network) if store else None
    except StoreError as err:
        raise CniError(IO_FAILURE, "cannot read the registrations", str(err)) from None
    finally:
        if store is not None:
            store.close()
    if registered is None:
        raise CniError(NAME_NOT_ANSWERED, "not registered",
                       f"container {request.container_id[:12]} on {request.network} ({request.ifname}) is not "
                       f"registered in {state_dir}")
    name = registered.name or registered.hostname or registered.container_id[:12]
    from dnsd.cni.check import answered_addresses  # the DNS query: loaded for CHECK only

    for family_addresses, qtype in ((registered.ipv4, "A"), (registered.ipv6, "AAAA")):
        if not family_addresses:
            continue
        server = expected.gateways[0]
        try:
            found = answered_addresses(server, name, qtype)
        except OSError as err:
            raise CniError(NAME_NOT_ANSWERED, "dnsd does not answer",
                           f"{qtype} {name} at {server}: {err.strerror or err}") from None
        missing = sorted(set(family_addresses) - set(found))
        if missing:
            raise CniError(NAME_NOT_ANSWERED, "dnsd does not answer the container's name",
                           f"{qtype} {name} at {server} gave {', '.join(found) or 'nothing'}, "
                           f"missing {', '.join(missing)}")


def state_dir_of(environ: dict[str, str], default: str = DEFAULT_STATE_DIR) -> str:
    """Where the registrations live (one dnsd per state dir): $NETCORE_CNI_STATE_DIR, else ``default`` (the
    one ``dnsd cni-install --state-dir`` wrote into the executable, else DEFAULT_STATE_DIR)."""
    return environ.get(STATE_DIR_ENV) or default


def run(environ: dict[str, str], stdin: bytes, dnsd: Dnsd) -> tuple[int, dict | None]:
    """One call, keeping ``dnsd`` in step: (exit status, the document to print on stdout, if any)."""
    version = LATEST
    try:
        request = read_request(environ, stdin)
        version = request.version if request.version in SUPPORTED_VERSIONS else LATEST
        if request.command == "VERSION":
            return 0, version_result(request)
        if request.command == "ADD":
            return 0, cmd_add(request, dnsd)
        {"DEL": cmd_del, "CHECK": cmd_check, "STATUS": cmd_status, "GC": cmd_gc}[request.command](request, dnsd)
        return 0, None
    except CniError as err:
        return 1, error_result(version, err)
    except OSError as err:
        return 1, error_result(version, CniError(IO_FAILURE, "I/O failure", str(err)))


def main(state_dir: str = DEFAULT_STATE_DIR) -> int:
    """The plugin's whole path in this process (the executable runs it when no dnsd takes the call on its
    CNI socket, see ``dnsd.cni.install``): exit status, the document on stdout."""
    environ = dict(os.environ)
    try:
        stdin = sys.stdin.buffer.read()
    except OSError as err:
        status, document = 1, error_result(LATEST, CniError(IO_FAILURE, "cannot read stdin", str(err)))
    else:
        status, document = run(environ, stdin, Dnsd(state_dir_of(environ, state_dir)))
    if document is not None:
        sys.stdout.write(json.dumps(document))
        sys.stdout.flush()
    return status
