"""What an operator sets: dnsd's settings with their defaults, and the error they can act on.

The one home of dnsd's defaults: the parts take theirs from here (the forwarder,
the cache, the query log, the UDP listeners), and ``ServerConfig``, whose
defaults the command lines show (``dnsd.__main__``, ``dnsd.aardvark``). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from dnsd.core.dialect import DOCKER, Dialect
from dnsd.core.snapshot import Upstream
from netcore.errors import NetcoreError
from netcore.model import DNS_PORT

DEFAULT_FORWARD_TIMEOUT = 3.0  # seconds for all the upstream servers of one query together (dnsd.upstream.forward)
DEFAULT_MAX_INFLIGHT = 1024  # forwarded queries at once; past that REFUSED (dnsd.upstream.forward)
DEFAULT_CACHE_SIZE = 10000  # forwarded answers kept, entries (dnsd.upstream.cache)
DEFAULT_CACHE_BYTES = 32 * 1024 * 1024  # what they may take in memory together, as the cache counts it
DEFAULT_QUERY_LOG_RATE = 100  # query log lines a second (dnsd.ops.querylog)
DEFAULT_QUERY_LOG_MAX_BYTES = 10 * 1024 * 1024  # per file, before it is rotated
DEFAULT_QUERY_LOG_BACKUPS = 3  # rotated files kept: 40 MB on disk at most with the defaults
DEFAULT_UDP_WINDOW = 0.0001  # seconds, the longest a busy UDP listener lets queries gather (dnsd.io.udp)


class DnsdError(NetcoreError):
    """A problem the operator can act on: another dnsd running, a namespace missing, a bad argument."""


@dataclass(frozen=True)
class ServerConfig:
    """How one dnsd serves; times in seconds."""

    port: int = DNS_PORT
    ttl: int = 0  # of local answers
    upstreams: tuple[Upstream, ...] = ()  # when neither the container nor the network names any
    forward_timeout: float = DEFAULT_FORWARD_TIMEOUT
    max_inflight: int = DEFAULT_MAX_INFLIGHT
    max_inflight_per_client: int | None = None  # default: an eighth of max_inflight, at least 16
    tcp_idle: float = 3.0  # before a silent TCP connection is closed; also the write timeout
    tcp_max: int = 512  # open TCP connections, all listeners together
    control_path: str | None = None  # the Unix socket netcore talks to
    managed: bool = False  # started by netcore (versus in the foreground under a supervisor)
    poll_interval: float = 1.0  # the backstop: how often the store's generation is checked
    udp_window: float = DEFAULT_UDP_WINDOW  # how long a busy UDP listener lets queries gather (see dnsd.io.udp)
    host_aliases: bool = True  # host.docker.internal and host.containers.internal answer as host.netcore.internal
    cache_size: int = DEFAULT_CACHE_SIZE  # forwarded answers kept (dnsd.upstream.cache); 0: no cache
    cache_bytes: int = DEFAULT_CACHE_BYTES  # what they may take in memory together (dnsd.upstream.cache); 0: no cache
    metrics: tuple[str, int] | None = None  # (address, port) of the Prometheus endpoint (dnsd.ops.metrics); None: off
    query_log: str | None = None  # path of the query log (dnsd.ops.querylog); None: off
    query_log_rate: int = DEFAULT_QUERY_LOG_RATE  # lines a second at most
    query_log_max_bytes: int = DEFAULT_QUERY_LOG_MAX_BYTES  # per file, then rotated
    query_log_backups: int = DEFAULT_QUERY_LOG_BACKUPS  # rotated files kept
    dialect: Dialect = DOCKER  # whose rules the names follow: Docker's, or aardvark-dns's (dnsd.aardvark)

    @property
    def client_share(self) -> int:
        """How many forwarded queries one client address may have in flight."""
        return self.max_inflight_per_client or min(self.max_inflight, max(16, self.max_inflight // 8))


def port_number(text: str) -> int:
    """A port as an operator writes it (dnsd's ``--port``, its aardvark-dns mode's ``-p``): 1 to 65535;
    ValueError otherwise."""
    value = int(text)
    if not 0 < value < 65536:
        raise ValueError
    return value


port_number.__name__ = "port (1 to 65535)"  # argparse names the type in its error: "invalid port (1 to 65535) value"
