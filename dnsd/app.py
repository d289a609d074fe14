"""The one assembly of dnsd: a server of a config and a record source, and what both commands run it with.

``make_server`` puts the parts together the one way dnsd runs them: the
``DnsServer`` shell over the answering core, a ``Forwarder`` for the names it
does not hold, the forwarded-answer cache around it, the query log, all
counting in one ``Stats``. ``python -m dnsd`` (``dnsd.__main__``: netcore's
store, or the CNI plugin's registrations) and the aardvark-dns drop-in
(``dnsd.aardvark``: Podman's config directory) each choose a record source
and a dialect, and call it; neither imports the other. ``run_loop`` is the
event loop both run on, ``host_nameservers`` the host's resolv.conf as both
read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from dnsd.core.config import ServerConfig
from dnsd.core.records import RecordSource
from dnsd.core.snapshot import MAX_UPSTREAMS, Upstream, parse_upstream
from dnsd.core.stats import Stats
from dnsd.ops.querylog import QueryLog
from dnsd.server import DnsServer
from dnsd.upstream.cache import AnswerCache, CachingResolver
from dnsd.upstream.forward import Forwarder

RESOLV_CONF = "/etc/resolv.conf"
RESOLV_CONF_ENV = "DNSD_RESOLV_CONF"  # another file to read the host's nameservers from (tests point it at their own)


def make_server(config: ServerConfig, records: RecordSource) -> DnsServer:
    """dnsd as it runs: a DnsServer of ``records`` whose names not held locally go upstream through a Forwarder,
    its replies kept in an AnswerCache unless ``config.cache_size`` or ``config.cache_bytes`` is 0, all counting
    in one Stats; with a QueryLog if ``config.query_log`` names a file (OSError if it cannot be opened). The
    Forwarder never asks an upstream that is one of the server's own listening addresses on its port."""
    stats = Stats()
    forwarder = Forwarder(config.forward_timeout, config.max_inflight, config.client_share, stats=stats)
    query_log = (QueryLog(config.query_log, config.query_log_rate, config.query_log_max_bytes,
                          config.query_log_backups) if config.query_log else None)  # OSError if it cannot be opened
    if not config.cache_size or not config.cache_bytes:
        server = DnsServer(config, records, forwarder, stats, query_log=query_log)
    else:
        cache = AnswerCache(config.cache_size, max_bytes=config.cache_bytes)
        server = DnsServer(config, records, CachingResolver(forwarder, cache), stats, cache, query_log)

    def is_own(upstream: Upstream) -> bool:
        return upstream.port == config.port and not upstream.netns and upstream.address in server.listen_addresses

    forwarder.is_own = is_own
    return server


def host_nameservers(path: str | None = None) -> tuple[Upstream, ...]:
    """The first nameservers of the host's resolv.conf that parse, at most MAX_UPSTREAMS: of ``path``, else of
    the file $DNSD_RESOLV_CONF names, else of /etc/resolv.conf. A server may carry a port (``IP:PORT``,
    ``[IPv6]:PORT``), which glibc's resolv.conf has no syntax for: for a file of dnsd's own."""
    path = path or os.environ.get(RESOLV_CONF_ENV) or RESOLV_CONF
    servers = []
    try:
        with open(path) as resolv_conf:
            for line in resolv_conf:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "nameserver":
                    with contextlib.suppress(ValueError):
                        servers.append(parse_upstream(fields[1]))
    except OSError:
        return ()
    return tuple(servers[:MAX_UPSTREAMS])


def run_loop(coroutine) -> None:
    """Run ``coroutine`` to its end on uvloop when it is installed, else asyncio's own loop (dnsd and its
    aardvark-dns mode)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)
