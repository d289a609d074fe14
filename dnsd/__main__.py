"""``python -m dnsd``: serve the names of a netcore state dir until stopped.

With ``--netns NAME`` (sandbox mode) dnsd first enters that existing named
network namespace, the gateway namespace, and has no default upstream. Without
it (host mode) it runs where it is started and forwards, by default, to the
host's resolv.conf nameservers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from dnsd.app import host_nameservers, make_server, run_loop
from dnsd.core.config import DnsdError, ServerConfig, port_number
from dnsd.core.snapshot import MAX_UPSTREAMS, Upstream, parse_upstream
from dnsd.ops.metrics import (
    DEFAULT_ADDRESS as DEFAULT_METRICS_ADDRESS,
    DEFAULT_PORT as DEFAULT_METRICS_PORT,
    parse_endpoint,
)
from dnsd.upstream.cache import MAX_ENTRY_BYTES
from netcore.dnsd_protocol import FOREGROUND, MANAGED, PID_NAME, SOCKET_NAME
from netcore.errors import NetcoreError
from netcore.store import Store
from netcore.system import linux
from netcore.system.arguments import OneLineParser
from netcore.system.processes import remove_pid_file, write_pid_file

MAX_WINDOW_MS = 10.0
MAX_CACHE_SIZE = 10_000_000
MAX_CACHE_BYTES = 2**40

DEFAULTS = ServerConfig()  # the command line's defaults are the config's

log = logging.getLogger("dnsd")


def _release() -> str:
    """The installed release of netcore and dnsd (one distribution), ``unknown`` outside one."""
    from importlib import metadata

    try:
        return metadata.version("netcore-dnsd")
    except metadata.PackageNotFoundError:
        return "unknown"


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise ValueError
        return value
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _ttl(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**31:
        raise ValueError
    return value


def _window(text: str) -> float:
    value = float(text)
    if not 0 <= value <= MAX_WINDOW_MS:
        raise ValueError
    return value


def _entries(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_CACHE_SIZE:
        raise ValueError
    return value


_BYTE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}


def _byte_size(text: str) -> int:
    """BYTES, or a number with a K, M or G suffix (powers of 1024): 32M is 33554432."""
    unit = text[-1:].upper() if text[-1:].isalpha() else ""
    if unit not in _BYTE_UNITS:
        raise ValueError
    value = int(text[:len(text) - len(unit)]) * _BYTE_UNITS[unit]
    if not 0 <= value <= MAX_CACHE_BYTES:
        raise ValueError
    return value


def _endpoint(text: str) -> tuple[str, int]:
    try:
        return parse_endpoint(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# argparse names the type in its error: "invalid port (1 to 65535) value: '0'"
_ttl.__name__ = "TTL (0 to 2147483647 seconds)"
_window.__name__ = f"window (0 to {MAX_WINDOW_MS:g} ms)"
_entries.__name__ = f"cache size (0 to {MAX_CACHE_SIZE} entries)"
_byte_size.__name__ = "byte size (BYTES, or with a K, M or G suffix)"


def _upstream(text: str) -> Upstream:
    try:
        return parse_upstream(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="dnsd", description="The embedded DNS server of netcore's bridge networks.")
    parser.add_argument("--version", action="version", version=f"dnsd {_release()}")
    parser.add_argument("--state-dir", default=os.environ.get("NETCORE_STATE_DIR"),
                        help="netcore's state dir (default: $NETCORE_STATE_DIR)")
    parser.add_argument("--netns", default=os.environ.get("NETCORE_NETNS") or None,
                        help="named network namespace to serve from (default: $NETCORE_NETNS; none: host mode)")
    parser.add_argument("--upstream", action="append", type=_upstream, default=[], metavar="IP[:PORT]",
                        help=f"default upstream server, repeatable, at most {MAX_UPSTREAMS} "
                             "(host mode default: resolv.conf's)")
    parser.add_argument("--ttl", type=_ttl, default=DEFAULTS.ttl,
                        help=f"TTL of local answers in seconds (default {DEFAULTS.ttl})")
    parser.add_argument("--max-inflight", type=_positive(int), default=DEFAULTS.max_inflight,
                        help=f"forwarded queries at once; past that REFUSED (default {DEFAULTS.max_inflight})")
    parser.add_argument("--max-inflight-per-client", type=_positive(int), default=DEFAULTS.max_inflight_per_client,
                        help="forwarded queries at once from one client address "
                             "(default: max-inflight / 8, at least 16)")
    parser.add_argument("--forward-timeout", type=_positive(float), default=DEFAULTS.forward_timeout,
                        help="seconds for all upstream servers of a query together "
                             f"(default {DEFAULTS.forward_timeout:g})")
    parser.add_argument("--tcp-idle", type=_positive(float), default=DEFAULTS.tcp_idle,
                        help=f"seconds before an idle TCP connection is closed (default {DEFAULTS.tcp_idle:g})")
    parser.add_argument("--tcp-max", type=_positive(int), default=DEFAULTS.tcp_max,
                        help=f"open TCP connections (default {DEFAULTS.tcp_max})")
    parser.add_argument("--udp-window", type=_window, default=DEFAULTS.udp_window * 1000, metavar="MS",
                        help="milliseconds a busy UDP listener lets queries gather before it reads them, "
                             f"at most {MAX_WINDOW_MS:g}; 0: never wait (default {DEFAULTS.udp_window * 1000:g})")
    parser.add_argument("--port", type=port_number, default=DEFAULTS.port,
                        help=f"port to serve on (default {DEFAULTS.port})")
    parser.add_argument("--cache-size", type=_entries, default=DEFAULTS.cache_size, metavar="ENTRIES",
                        help="forwarded answers kept, least recently used out first; 0: no cache "
                             f"(default {DEFAULTS.cache_size})")
    parser.add_argument("--cache-bytes", type=_byte_size, default=DEFAULTS.cache_bytes, metavar="BYTES",
                        help="memory the forwarded answers kept may take together (K, M, G suffixes), least "
                             f"recently used out first; an answer over {MAX_ENTRY_BYTES // 1024} KiB is never "
                             f"kept; 0: no cache (default {DEFAULTS.cache_bytes // 2**20}M)")
    parser.add_argument("--no-host-aliases", dest="host_aliases", action="store_false",
                        help="answer only host.netcore.internal with the gateway, not host.docker.internal "
                             "and host.containers.internal (default: all three)")
    parser.add_argument("--metrics", nargs="?", type=_endpoint, const=_endpoint(""), metavar="ADDR:PORT",
                        help="serve Prometheus metrics at http://ADDR:PORT/metrics (no value: "
                             f"{DEFAULT_METRICS_ADDRESS}:{DEFAULT_METRICS_PORT}, loopback of the namespace dnsd "
                             "serves from; default: off)")
    parser.add_argument("--query-log", metavar="PATH",
                        help="write one JSON line per query to PATH, rotated (default: off)")
    parser.add_argument("--query-log-rate", type=_positive(int), default=DEFAULTS.query_log_rate, metavar="LINES",
                        help=f"query log lines a second at most (default {DEFAULTS.query_log_rate})")
    parser.add_argument("--query-log-size", type=_positive(int), default=DEFAULTS.query_log_max_bytes // 2**20,
                        metavar="MB", help="query log size before it is rotated, in MiB "
                                           f"(default {DEFAULTS.query_log_max_bytes // 2**20}, "
                                           f"{DEFAULTS.query_log_backups} old files kept)")
    parser.add_argument("--managed", action="store_true", help="started by netcore, which stops it when unused")
    parser.add_argument("--cni", action="store_true",
                        help="serve what the netcore-dns CNI plugin registered in the state dir (dnsd.sources.cni) "
                             "instead of netcore's store")
    args = parser.parse_args(argv)
    if not args.state_dir:
        parser.error("no state dir: pass --state-dir or set NETCORE_STATE_DIR")
    if len(args.upstream) > MAX_UPSTREAMS:
        parser.error(f"at most {MAX_UPSTREAMS} --upstream servers")
    return args


def enter_netns(name: str) -> None:
    """Move this process, before it starts threads, into an existing named network namespace (never creates one).

    DnsdError, one line, if it cannot: a bad name, no such namespace, not root.
    """
    try:
        path = linux.netns_path(name)
    except OSError as err:
        raise DnsdError(err.strerror) from None
    try:
        linux.enter_netns(name)
    except FileNotFoundError:
        raise DnsdError(f"network namespace {name!r} does not exist (no {path})") from None
    except PermissionError:
        raise DnsdError(f"cannot enter network namespace {name!r} ({path}): permission denied (run as root)") from None
    except OSError as err:
        raise DnsdError(f"cannot enter network namespace {name!r}: {os.strerror(err.errno)}") from None


async def serve(state_dir: str, config: ServerConfig, cni: bool = False) -> None:
    """Run until SIGTERM, SIGINT or ``stop`` on the control socket; the pid file lives as long as we do.

    ``cni``: the records are the CNI plugin's registrations in ``state_dir`` (``dnsd.sources.cni``), not
    netcore's store.
    """
    service = None
    if cni:
        from dnsd.sources.cni import CniRecords

        store = CniRecords(state_dir)
    else:
        from .sources.cluster import ClusterRecords  # the store, and other hosts' names if this host joined a cluster

        store = ClusterRecords(Store.open_readonly(state_dir), state_dir)
    server = make_server(config, store)
    pid_path = os.path.join(state_dir, PID_NAME)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.request_stop)
    try:
        await server.start(on_up=lambda: write_pid_file(pid_path))
        if cni:  # the plugin's calls, taken here (dnsd.cni.service)
            from dnsd.cni.service import CniService

            service = CniService(server, state_dir)
            await service.open()
        log.info("serving %s (%s mode), generation %s", state_dir, MANAGED if config.managed else FOREGROUND,
                 server.generation)
        await server.wait_stopped()
        log.info("stopping")
    finally:
        if service is not None:
            service.close()
        await server.close()
        store.close()
        remove_pid_file(pid_path)  # unless a newer dnsd wrote its own


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    if words[:1] == ["podman-helper-dir"]:  # see dnsd.aardvark
        from dnsd.aardvark import print_helper_dir
        return print_helper_dir(words[1:])
    if words[:1] == ["cni-install"]:  # see dnsd.cni.install
        from dnsd.cni.install import main as cni_install
        return cni_install(words[1:])
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s dnsd[%(process)d] %(levelname)s %(message)s")
    try:
        if not os.path.isdir(args.state_dir):
            raise DnsdError(f"state dir {args.state_dir} does not exist")
        if args.netns and not args.cni:  # the CNI server serves the runtime's namespace, where it is started
            enter_netns(args.netns)
            upstreams = tuple(args.upstream)
        else:
            upstreams = tuple(args.upstream) or host_nameservers()
        config = ServerConfig(port=args.port, ttl=args.ttl, upstreams=upstreams,
                              forward_timeout=args.forward_timeout, max_inflight=args.max_inflight,
                              max_inflight_per_client=args.max_inflight_per_client,
                              tcp_idle=args.tcp_idle, tcp_max=args.tcp_max, udp_window=args.udp_window / 1000,
                              control_path=os.path.join(args.state_dir, SOCKET_NAME), managed=args.managed,
                              cache_size=args.cache_size, cache_bytes=args.cache_bytes,
                              host_aliases=args.host_aliases, metrics=args.metrics,
                              query_log=args.query_log, query_log_rate=args.query_log_rate,
                              query_log_max_bytes=args.query_log_size * 2**20)
        run_loop(serve(args.state_dir, config, args.cni))
    except NetcoreError as err:
        print(f"dnsd: {err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:
        print(f"dnsd: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
