"""Prometheus metrics: what dnsd counts, exported as text by ``prometheus_client`` (``dnsd --metrics``).

Names follow CoreDNS's (``coredns_dns_requests_total``, ``coredns_cache_hits_total``,
``coredns_forward_max_concurrent_rejects_total``...) with a ``dnsd_`` prefix:

* ``dnsd_requests_total{network, proto, type}``: every query, by the network of
  the gateway it was asked at, udp or tcp, and its question type (A, AAAA, PTR,
  ... "other" for the rest, as CoreDNS does);
* ``dnsd_responses_total{rcode, source}``: every reply, by its rcode and where
  it came from: ``local`` (the snapshot, dnsd's own errors included),
  ``cache`` (the forwarded-answer cache, on the fast path), ``upstream``
  (through the resolver on the event loop: an upstream's reply, or dnsd's
  SERVFAIL/REFUSED when forwarding failed or was refused);
* ``dnsd_request_duration_seconds{source}``: a histogram with CoreDNS's buckets
  (0.25 ms doubling to 8.192 s). Forwarded queries are timed one by one;
  local and cached UDP answers are timed per wake-up of a listener thread
  (the batch's time divided among its queries, see ``dnsd.io.udp.serve``), so
  timing costs nothing per query;
* ``dnsd_cache_entries``, ``dnsd_cache_bytes`` (what the entries take, as the
  cache's byte budget counts it), ``dnsd_cache_hits_total``,
  ``dnsd_cache_misses_total``, ``dnsd_cache_evictions_total``,
  ``dnsd_cache_too_large_total`` (replies relayed but not kept for their size);
* ``dnsd_forward_requests_total``, ``dnsd_forward_failures_total{to, reason}``
  (reason: timeout, error, malformed: a reply that is not well-formed, or
  loop: the upstream is dnsd itself), ``dnsd_forward_truncated_retries_total``,
  ``dnsd_forward_max_concurrent_rejects_total``;
* against forgery and loops (``dnsd.upstream.forward``): ``dnsd_forward_merged_total``
  (queries that waited for the same question already out at an upstream),
  ``dnsd_forward_spoofed_replies_total`` (datagrams on an upstream socket that
  did not answer its query), ``dnsd_forward_spoof_detected_total`` (upstream
  queries abandoned for a flood of those and asked over TCP instead, RFC 5452
  section 9.2), ``dnsd_forward_loops_total`` (queries not forwarded as they
  would loop back to dnsd);
* ``dnsd_malformed_requests_total``: bad input answered FORMERR/NOTIMP or dropped.

Counting is cheap by construction: a query bumps one entry of a plain dict
that only its own thread writes (``QueryCounts``: one per UDP listener thread,
keyed by (type bytes, rcode), one for the event loop); nothing is labelled or
formatted until a scrape, when ``DnsdCollector`` sums the tables. A reader may
see a table a query behind: never a lost count.
"""

from __future__ import annotations

import bisect
import ipaddress
import logging
import threading
from collections.abc import Callable, Iterator
from time import perf_counter

import dnslib
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from dnsd.core.wire import question_name_end

log = logging.getLogger("dnsd")

DEFAULT_PORT = 9153  # CoreDNS's metrics port
DEFAULT_ADDRESS = "127.0.0.1"  # loopback of the namespace dnsd serves from: the gateway namespace in sandbox mode
BUCKETS = tuple(0.00025 * 2 ** i for i in range(16))  # CoreDNS's: prometheus.ExponentialBuckets(0.00025, 2, 16)
LOCAL, CACHE, UPSTREAM = "local", "cache", "upstream"
ANSWERED = "answered"  # local or cached: told apart at a scrape (QueryCounts)
TCP_WRITER = "loop"  # the writer key of the event loop (TCP queries, forwarded replies)


def question_type(data: bytes) -> bytes:
    """The question type of a query as its 2 wire bytes; b"" when there is no readable question."""
    if data[10:12] == b"\x00\x00":  # no additional record: the question ends the message
        return data[-4:-2]
    end = question_name_end(data)
    return data[end:end + 2] if end is not None else b""


def type_label(wire_type: bytes) -> str:
    """A question type's name for a label: A, AAAA, ... or "other" (unknown or unreadable), as CoreDNS does."""
    if len(wire_type) != 2:
        return "other"
    name = dnslib.QTYPE.get(int.from_bytes(wire_type, "big"), None)
    return name if isinstance(name, str) and not name.startswith("TYPE") else "other"


def rcode_label(rcode: int) -> str:
    name = dnslib.RCODE.get(rcode, None)
    return name if isinstance(name, str) else str(rcode)


class Durations:
    """A histogram over ``BUCKETS`` with one writer thread: counts per bucket (the last: above them all) and sum."""

    __slots__ = ("counts", "total")

    def __init__(self):
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float, count: int = 1) -> None:
        """``count`` events of ``seconds`` each."""
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += count
        self.total += seconds * count


class QueryCounts:
    """Per-writer tables of query counts and durations (see the module's docstring).

    ``udp``: per listener thread (keyed by its gateway address), {(question type bytes, rcode or None): count},
    None meaning no reply from that thread (handed to the resolver, or dropped). ``loop``: the event loop's,
    {(gateway or None, "udp" or "tcp", type bytes, rcode or None, ANSWERED or UPSTREAM): count}: TCP queries
    with their gateway, and the resolver's replies (gateway None). ANSWERED replies, local or cached, are told
    apart at a scrape by the cache's own hit counts (``AnswerCache.rcode_hits``), so the fast path stays as
    fast with metrics on: a cached answer still comes from the answerer's memo.
    """

    def __init__(self):
        self.udp: dict[str, dict[tuple[bytes, int | None], int]] = {}
        self.loop: dict[tuple, int] = {}
        self.lock = threading.Lock()  # of ``loop``: the UDP threads write it too while the query log is on
        self._durations: dict[object, dict[str, Durations]] = {}

    def udp_table(self, gateway: str) -> dict[tuple[bytes, int | None], int]:
        """The table only the UDP thread of ``gateway`` writes; made on first use."""
        table = self.udp.get(gateway)
        if table is None:
            table = self.udp.setdefault(gateway, {})
        return table

    def durations(self, writer: object, source: str) -> Durations:
        """The histogram of ``source`` that only ``writer`` writes."""
        by_source = self._durations.get(writer)
        if by_source is None:
            by_source = self._durations.setdefault(writer, {})
        histogram = by_source.get(source)
        if histogram is None:
            histogram = by_source.setdefault(source, Durations())
        return histogram

    def histograms(self) -> dict[str, Durations]:
        """Every writer's histograms summed, by source."""
        summed: dict[str, Durations] = {}
        for by_source in list(self._durations.values()):
            for source, histogram in list(by_source.items()):
                total = summed.setdefault(source, Durations())
                total.counts = [a + b for a, b in zip(total.counts, histogram.counts, strict=True)]
                total.total += histogram.total
        return summed

    def requests_and_responses(self, network_of: Callable[[str], str], cache_hits: list[int] | None
                               ) -> tuple[dict[tuple[str, str, str], int], dict[tuple[str, str], int]]:
        """{(network, proto, type): queries} and {(rcode, source): replies}, summed over every table."""
        requests: dict[tuple[str, str, str], int] = {}
        responses: dict[tuple[str, str], int] = {}
        answered: dict[int, int] = {}

        def request(gateway: str, proto: str, wire_type: bytes, count: int) -> None:
            key = (network_of(gateway), proto, type_label(wire_type))
            requests[key] = requests.get(key, 0) + count

        for gateway, table in list(self.udp.items()):
            for (wire_type, rcode), count in list(table.items()):
                request(gateway, "udp", wire_type, count)
                if rcode is not None:
                    answered[rcode] = answered.get(rcode, 0) + count
        for (gateway, proto, wire_type, rcode, source), count in list(self.loop.items()):
            if gateway is not None:
                request(gateway, proto, wire_type, count)
            if rcode is None:
                continue
            if source == UPSTREAM:
                key = (rcode_label(rcode), UPSTREAM)
                responses[key] = responses.get(key, 0) + count
            else:
                answered[rcode] = answered.get(rcode, 0) + count
        for rcode, count in answered.items():
            hits = min(cache_hits[rcode], count) if cache_hits is not None else 0
            if hits:
                responses[(rcode_label(rcode), CACHE)] = hits
            if count - hits:
                responses[(rcode_label(rcode), LOCAL)] = count - hits
        return requests, responses


class ObservedResolver:
    """A ``Resolver`` that counts and times the replies of the one it wraps, and writes them to the query log.

    ``counts`` (a QueryCounts) and ``query_log`` (a ``dnsd.ops.querylog.QueryLog``) may each be None;
    ``network_of(gateway address)`` names the network for the log. Runs on the event loop only.
    """

    def __init__(self, inner, counts: QueryCounts | None, query_log, network_of: Callable[[str], str]):
        self.inner = inner
        self.counts = counts
        self.query_log = query_log
        self.network_of = network_of

    async def resolve(self, forward, tcp: bool, client: str = "") -> bytes | None:
        """The inner resolver's reply (None: none is sent), observed."""
        started = perf_counter()
        reply = await self.inner.resolve(forward, tcp, client)
        seconds = perf_counter() - started
        rcode = reply[3] & 0x0F if reply is not None else None
        if self.counts is not None:
            table = self.counts.loop
            key = (None, "tcp" if tcp else "udp", b"", rcode, UPSTREAM)
            with self.counts.lock:
                table[key] = table.get(key, 0) + 1
            self.counts.durations(TCP_WRITER, UPSTREAM).observe(seconds)
        if self.query_log is not None:
            self.query_log.write(client, self.network_of(forward.listener_ip), forward.query, rcode, UPSTREAM,
                                 seconds)
        return reply


class DnsdCollector:
    """Turns a server's counts into metric families at each scrape (a ``prometheus_client`` custom collector).

    ``network_of(gateway address) -> network name`` labels the requests; ``server`` is a ``DnsServer``.
    """

    def __init__(self, server, network_of: Callable[[str], str]):
        self.server = server
        self.network_of = network_of

    def collect(self) -> Iterator:
        server = self.server
        counts: QueryCounts = server.query_counts
        cache = server.cache
        by_request, by_response = counts.requests_and_responses(self.network_of,
                                                                list(cache.rcode_hits) if cache else None)
        requests = CounterMetricFamily("dnsd_requests", "DNS queries received",
                                       labels=("network", "proto", "type"))
        responses = CounterMetricFamily("dnsd_responses", "DNS replies sent", labels=("rcode", "source"))
        for labels, count in sorted(by_request.items()):
            requests.add_metric(labels, count)
        for labels, count in sorted(by_response.items()):
            responses.add_metric(labels, count)
        yield requests
        yield responses
        duration = HistogramMetricFamily("dnsd_request_duration_seconds", "Time to answer a query",
                                         labels=("source",))
        for source, histogram in sorted(counts.histograms().items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*BUCKETS, float("inf")), histogram.counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            duration.add_metric((source,), buckets, histogram.total)
        yield duration
        stats = server.stats
        if cache is not None:
            yield GaugeMetricFamily("dnsd_cache_entries", "Forwarded answers in the cache", value=len(cache))
            yield CounterMetricFamily("dnsd_cache_hits", "Queries answered from the cache", value=cache.hits)
            yield CounterMetricFamily("dnsd_cache_misses", "Forwarded queries the cache could not answer",
                                      value=cache.misses)
            yield GaugeMetricFamily("dnsd_cache_bytes", "Bytes the cache's entries take (its byte budget's count)",
                                    value=cache.bytes)
            yield CounterMetricFamily("dnsd_cache_evictions", "Entries pushed out of the full cache",
                                      value=cache.evictions)
            yield CounterMetricFamily("dnsd_cache_too_large", "Forwarded answers not kept for their size",
                                      value=cache.too_large)
        yield CounterMetricFamily("dnsd_forward_requests", "Queries asked upstream", value=stats.forwarded)
        failures = CounterMetricFamily("dnsd_forward_failures", "Upstream servers that timed out, failed, sent "
                                       "an unreadable reply or were dnsd itself",
                                       labels=("to", "reason"))
        for (upstream, reason), count in sorted(dict(stats.upstream_errors).items()):
            failures.add_metric((upstream, reason), count)
        yield failures
        yield CounterMetricFamily("dnsd_forward_truncated_retries", "Truncated upstream replies asked again over TCP",
                                  value=stats.truncated_retried)
        yield CounterMetricFamily("dnsd_forward_merged", "Queries that waited for the same question already asked",
                                  value=stats.forward_merged)
        yield CounterMetricFamily("dnsd_forward_spoofed_replies",
                                  "Datagrams on an upstream socket that did not answer its query",
                                  value=stats.spoofed_replies)
        yield CounterMetricFamily("dnsd_forward_spoof_detected",
                                  "Upstream queries abandoned for a flood of mismatched replies, asked over TCP",
                                  value=stats.spoof_detected)
        yield CounterMetricFamily("dnsd_forward_loops", "Queries not forwarded as they would loop back to dnsd",
                                  value=stats.forward_loops)
        yield CounterMetricFamily("dnsd_forward_max_concurrent_rejects",
                                  "Queries refused at an in-flight cap", value=stats.refused_inflight)
        yield CounterMetricFamily("dnsd_malformed_requests", "Messages that were no well-formed query",
                                  value=stats.malformed)


class MetricsEndpoint:
    """``/metrics`` over HTTP on ``address``:``port`` in a thread of its own, from a registry of dnsd's own."""

    def __init__(self, address: str, port: int, collector: DnsdCollector):
        self.address = address
        self.port = port
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve; OSError if the address cannot be bound."""
        started = start_http_server(self.port, self.address, registry=self.registry)
        if started is not None:  # prometheus_client >= 0.17 returns (server, thread)
            self._server, self._thread = started
        log.info("metrics on http://%s:%d/metrics", self.address, self.port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def parse_endpoint(text: str) -> tuple[str, int]:
    """``ADDR:PORT``, ``[V6]:PORT``, ``ADDR`` or ``:PORT`` -> (address, port), defaults filled in; ValueError."""
    address, port = text, DEFAULT_PORT
    if text.startswith("["):
        address, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad metrics address {text!r}")
            port = int(rest[1:])
    elif text.count(":") == 1:
        address, _, port_text = text.partition(":")
        port = int(port_text)
    address = address or DEFAULT_ADDRESS
    ipaddress.ip_address(address)
    if not 0 < port < 65536:
        raise ValueError(f"bad metrics port {port}")
    return address, port
