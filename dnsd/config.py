"""What an operator sets: dnsd's settings with their defaults, and the error they can act on.

``ServerConfig`` is the one home of dnsd's defaults: ``dnsd.__main__`` takes its
command line defaults from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from netcore.errors import NetcoreError
from netcore.model import DNS_PORT

from .cache import DEFAULT_BYTES as DEFAULT_CACHE_BYTES, DEFAULT_SIZE as DEFAULT_CACHE_SIZE
from .dialect import DOCKER, Dialect
from .forward import DEFAULT_MAX_INFLIGHT, DEFAULT_TIMEOUT
from .querylog import (
    DEFAULT_BACKUPS as DEFAULT_QUERY_LOG_BACKUPS,
    DEFAULT_MAX_BYTES as DEFAULT_QUERY_LOG_MAX_BYTES,
    DEFAULT_RATE as DEFAULT_QUERY_LOG_RATE,
)
from .snapshot import Upstream
from .udp import DEFAULT_WINDOW


class DnsdError(NetcoreError):
    """A problem the operator can act on: another dnsd running, a namespace missing, a bad argument."""


@dataclass(frozen=True)
class ServerConfig:
    """How one dnsd serves; times in seconds."""

    port: int = DNS_PORT
    ttl: int = 0  # of local answers
    upstreams: tuple[Upstream, ...] = ()  # when neither the container nor the network names any
    forward_timeout: float = DEFAULT_TIMEOUT
    max_inflight: int = DEFAULT_MAX_INFLIGHT
    max_inflight_per_client: int | None = None  # default: an eighth of max_inflight, at least 16
    tcp_idle: float = 3.0  # before a silent TCP connection is closed; also the write timeout
    tcp_max: int = 512  # open TCP connections, all listeners together
    control_path: str | None = None  # the Unix socket netcore talks to
    managed: bool = False  # started by netcore (versus in the foreground under a supervisor)
    poll_interval: float = 1.0  # the backstop: how often the store's generation is checked
    udp_window: float = DEFAULT_WINDOW  # how long a busy UDP listener lets queries gather (see dnsd.udp)
    host_aliases: bool = True  # host.docker.internal and host.containers.internal answer as host.netcore.internal
    cache_size: int = DEFAULT_CACHE_SIZE  # forwarded answers kept (dnsd.cache); 0: no cache
    cache_bytes: int = DEFAULT_CACHE_BYTES  # what they may take in memory together (dnsd.cache); 0: no cache
    metrics: tuple[str, int] | None = None  # (address, port) of the Prometheus endpoint (dnsd.metrics); None: off
    query_log: str | None = None  # path of the query log (dnsd.querylog); None: off
    query_log_rate: int = DEFAULT_QUERY_LOG_RATE  # lines a second at most
    query_log_max_bytes: int = DEFAULT_QUERY_LOG_MAX_BYTES  # per file, then rotated
    query_log_backups: int = DEFAULT_QUERY_LOG_BACKUPS  # rotated files kept
    dialect: Dialect = DOCKER  # whose rules the names follow: Docker's, or aardvark-dns's (dnsd.aardvark)

    @property
    def client_share(self) -> int:
        """How many forwarded queries one client address may have in flight."""
        return self.max_inflight_per_client or min(self.max_inflight, max(16, self.max_inflight // 8))
