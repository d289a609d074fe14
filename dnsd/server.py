"""The asyncio shell: wires the answering core to the listeners, the resolver, reloads and the control socket.

The shell decides nothing about names. Its parts, each in a module of its own:
the listeners on every gateway address (``dnsd.io.listeners``: a UDP thread each,
``dnsd.io.udp``, and a TCP server, ``dnsd.io.tcp``), reloads (``dnsd.reload``), and
the control socket (``dnsd.ops.control``). ``DnsServer`` hands messages to the
Answerer and sends what comes back, hands Forward decisions to its Resolver
(``dnsd.upstream.forward``), and swaps in each new Snapshot whole, then reconciles the
listeners with it.

TCP, forwarding, the control socket and reloads run on the event loop; each
listener's UDP socket has a thread of its own, and snapshots are built in the
reload thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from time import perf_counter

from dnsd.core.answer import Answerer, Forward
from dnsd.core.config import DnsdError, ServerConfig
from dnsd.core.records import RecordSource
from dnsd.core.snapshot import Snapshot, host_names, upstreams_changed
from dnsd.core.stats import Stats
from dnsd.core.wire import TCP_MESSAGE_MAX
from dnsd.io.listeners import Listener, Listeners
from dnsd.io.tcp import TcpConnections
from dnsd.ops.control import ControlSocket
from dnsd.ops.metrics import (
    ANSWERED,
    CACHE,
    LOCAL,
    TCP_WRITER,
    UPSTREAM,
    DnsdCollector,
    MetricsEndpoint,
    ObservedResolver,
    QueryCounts,
    question_type,
)
from dnsd.ops.querylog import QueryLog
from dnsd.reload import Reloader
from dnsd.upstream.cache import AnswerCache
from dnsd.upstream.forward import Resolver

log = logging.getLogger("dnsd")


class DnsServer:
    """Serves the records of ``records``, following its generation (see the module's docstring).

    Names it does not hold go to ``resolver`` (dnsd's is a ``Forwarder``, made by ``dnsd.app.make_server``).
    ``stats`` is shared with the resolver: every part counts there (see ``dnsd.core.stats``).
    """

    def __init__(self, config: ServerConfig, records: RecordSource, resolver: Resolver, stats: Stats,
                 cache: AnswerCache | None = None, query_log: QueryLog | None = None):
        self.config = config
        self.stats = stats
        self.cache = cache  # forwarded answers, looked up on the fast path (see ``_answer``)
        self.answerer = Answerer(Snapshot.empty(), config.upstreams, stats, host_names(config.host_aliases),
                                 config.dialect)
        self.query_counts = QueryCounts() if config.metrics else None
        self.query_log = query_log
        answer_udp = answer_tcp = self._answer
        observed = self.query_counts is not None or query_log is not None
        if observed:  # every query observed
            answer_tcp = self._answer_observed
            answer_udp = self._answer_observed if query_log is not None else self._answer_counted
            resolver = ObservedResolver(resolver, self.query_counts, query_log, self.network_of)
            if self.query_counts is not None:
                stats.observe_batch = self._observe_batch
        self._metrics = (MetricsEndpoint(*config.metrics, DnsdCollector(self, self.network_of))
                         if config.metrics else None)
        self.resolver = resolver
        self._reloader = Reloader(records, config.ttl, stats, config.dialect)
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self._tcp = TcpConnections(answer_tcp, resolver, self._spawn, config.tcp_idle, config.tcp_max, stats)
        # replayed replies are neither counted per query nor logged: only a server that does neither replays
        replay = None if observed else self.answerer
        self._listeners = Listeners(config.port, config.udp_window, answer_udp, self._forward_datagram_later,
                                    self._tcp.serve, stats, replay)
        self._control = ControlSocket(config.control_path, self, config.managed) if config.control_path else None
        self._stopped = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def listen_addresses(self) -> frozenset[str]:
        """The gateway addresses served now."""
        return self._listeners.addresses

    @property
    def generation(self) -> int | None:
        """The store generation of the snapshot being served; None before the first."""
        return self._reloader.generation

    @property
    def down_listeners(self) -> dict[str, str]:
        """Gateway address -> why dnsd cannot listen there (one line), for every wanted address not served."""
        return self._listeners.down

    def stats_report(self) -> dict[str, int]:
        """The ``stats`` command's numbers: the shared counts (``Stats.counts``), the generation served (0 before
        the first), listeners up and down, and TCP connections open now."""
        return {**self.stats.counts(), "tcp_open": self._tcp.open_count, "generation": self.generation or 0,
                "listeners_up": len(self._listeners.addresses), "listeners_down": len(self.down_listeners)}

    async def start(self, on_up: Callable[[], None] | None = None) -> None:
        """Open the control socket, load the records and open the listeners; DnsdError if another dnsd runs.

        ``on_up`` (writing the pid file) runs once all that is done, before ``ping`` gets its first
        answer: a caller that got a pong finds dnsd serving and its pid file written.
        """
        self._loop = asyncio.get_running_loop()
        if self._control is not None:  # first, so a second dnsd for the same state dir stops before binding
            await self._control.open()
        if self._metrics is not None:
            try:
                self._metrics.start()
            except OSError as err:
                raise DnsdError(f"cannot serve metrics on {self._metrics.address} port {self._metrics.port}: "
                                f"{err.strerror or err}") from None
        await self.sync()
        for background in (self._poll_generation(), self._report_bad_input()):
            self._spawn(background)
        if on_up is not None:
            on_up()
        if self._control is not None:
            self._control.up.set()

    async def wait_stopped(self) -> None:
        """Returns once something asked dnsd to stop (``request_stop``)."""
        await self._stopped.wait()

    def request_stop(self) -> None:
        """Have ``wait_stopped`` return: the caller then closes the server."""
        self._stopped.set()

    def stop_taking_commands(self) -> None:
        """Close the control socket now, ahead of ``close``: whoever comes next finds no dnsd here and starts
        another (the CNI server, stopping after the last DEL; ``dnsd.cni.service``)."""
        if self._control is not None:
            self._control.close()

    async def close(self) -> None:
        """Close the control socket and the listeners, end every task and TCP connection."""
        if self._control is not None:
            self._control.close()
        if self._metrics is not None:
            self._metrics.close()
        await self._listeners.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._tcp.close()
        self._reloader.close()
        if self.query_log is not None:
            self.query_log.close()

    async def sync(self) -> int:
        """Reload if the store changed and reconcile the listeners; returns once the new snapshot is live."""
        async with self._reload_lock:
            snapshot = await self._reloader.reload()
            if snapshot is not None:
                if self.cache is not None and upstreams_changed(self.answerer.snapshot, snapshot):
                    self.cache.flush()
                self.answerer.snapshot = snapshot
            await self._listeners.reconcile(self.answerer.snapshot.listen_addresses)
            return self._reloader.generation

    async def _poll_generation(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_interval)
            try:
                await self.sync()
            except Exception as err:  # noqa: BLE001 - the store may be busy or gone for a moment; the next poll retries
                log.warning("reload failed: %s", err)

    async def _report_bad_input(self) -> None:
        """At most one log line per second about malformed messages and internal errors."""
        stats = self.stats
        reported_bad, reported_errors = 0, 0
        while True:
            await asyncio.sleep(1.0)
            bad, errors = stats.malformed, stats.internal_errors
            if bad != reported_bad:
                reason, source = stats.last_malformed
                log.warning("%d malformed messages in the last second, the latest from %s: %s",
                            bad - reported_bad, source, reason)
            if errors != reported_errors:
                log.error("%d messages failed with an internal error, the latest: %s",
                          errors - reported_errors, stats.last_internal_error)
            reported_bad, reported_errors = bad, errors

    def _answer(self, data: bytes, client_ip: str, listener_ip: str, tcp: bool) -> bytes | Forward | None:
        """The answerer's decision; a Forward whose reply the cache holds is answered here, in the calling
        thread, as a local name is (no trip to the event loop)."""
        try:
            result = self.answerer.handle(data, client_ip, listener_ip, tcp)
            if result.__class__ is Forward and self.cache is not None:
                limit = TCP_MESSAGE_MAX if tcp else result.udp_limit
                cached = self.cache.lookup(result, limit)
                if cached is not None:
                    if not tcp:  # the next such query is answered from the answerer's memo, as a local name is
                        remembered = self.cache.remembered(result, limit)
                        if remembered is not None:
                            self.answerer.remember_reply(data, client_ip, listener_ip, remembered)
                    return cached
            return result
        except Exception as err:  # noqa: BLE001 - a bug; the message is dropped and the server goes on
            return self._internal_error(err)

    def _internal_error(self, err: Exception) -> None:
        """Count a bug met while answering (the message is dropped: None)."""
        self.stats.internal_errors += 1
        self.stats.last_internal_error = repr(err)

    def _answer_counted(self, data: bytes, client_ip: str, listener_ip: str, tcp: bool) -> bytes | Forward | None:
        """``_answer`` counted for the metrics, in a listener's UDP thread (metrics on, query log off).

        This runs once per query: one entry of a dict only this thread writes, keyed by the question type and
        the rcode (None: no reply from here); local and cached answers are told apart at a scrape
        (``dnsd.ops.metrics.QueryCounts``), so a cached answer still takes the memo's fast path.
        """
        result = self._answer(data, client_ip, listener_ip, tcp)
        table = self.query_counts.udp.get(listener_ip)
        if table is None:
            table = self.query_counts.udp_table(listener_ip)
        key = (data[-4:-2] if data[10:12] == b"\x00\x00" else question_type(data),
               result[3] & 0x0F if result.__class__ is bytes else None)
        table[key] = table.get(key, 0) + 1
        return result

    def _answer_observed(self, data: bytes, client_ip: str, listener_ip: str, tcp: bool) -> bytes | Forward | None:
        """``_answer``, counted for the metrics and written to the query log (whichever is on): TCP queries,
        and UDP ones while the query log is on (a cached answer then comes from the cache, not the memo, so
        its log line can say so)."""
        log = self.query_log
        started = perf_counter()
        try:
            result = self.answerer.handle(data, client_ip, listener_ip, tcp)
        except Exception as err:  # noqa: BLE001 - a bug; the message is dropped and the server goes on
            result = self._internal_error(err)
        source = LOCAL
        rcode = None
        if result.__class__ is bytes:
            rcode = result[3] & 0x0F
        elif result.__class__ is Forward:
            source = UPSTREAM  # its reply is counted by the ObservedResolver
            if self.cache is not None:
                cached = self.cache.lookup(result, TCP_MESSAGE_MAX if tcp else result.udp_limit)
                if cached is not None:
                    result, source, rcode = cached, CACHE, cached[3] & 0x0F
        counts = self.query_counts
        if counts is not None:
            key = (listener_ip, "tcp" if tcp else "udp", question_type(data), rcode, ANSWERED)
            with counts.lock:  # UDP threads (query log on) and the event loop share this table
                counts.loop[key] = counts.loop.get(key, 0) + 1
            if tcp and rcode is not None:  # UDP answers are timed per batch (_observe_batch)
                counts.durations(TCP_WRITER, LOCAL).observe(perf_counter() - started)
        if log is not None and source != UPSTREAM:
            log.write(client_ip, self.network_of(listener_ip), data, rcode, source, perf_counter() - started)
        return result

    def _observe_batch(self, batch: object, seconds: float, answered: int) -> None:
        """A UDP thread's wake-up: ``answered`` replies in ``seconds``, observed as that many equal durations."""
        if answered:
            self.query_counts.durations(batch, LOCAL).observe(seconds / answered, answered)

    def network_of(self, gateway: str) -> str:
        """The name of the network whose gateway address this is, in the snapshot served now; "" if none."""
        scope = self.answerer.snapshot.listeners.get(gateway)
        return scope.networks[0].name if scope is not None and scope.networks else ""

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _forward_datagram_later(self, listener: Listener, forward: Forward, client: tuple) -> None:
        """Called from a listener's UDP thread: the forwarding itself runs on the event loop."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: dnsd is stopping, the query goes unanswered
            self._loop.call_soon_threadsafe(self._forward_datagram_now, listener, forward, client)

    def _forward_datagram_now(self, listener: Listener, forward: Forward, client: tuple) -> None:
        self._spawn(self._forward_datagram(listener, forward, client))

    async def _forward_datagram(self, listener: Listener, forward: Forward, client: tuple) -> None:
        reply = await self.resolver.resolve(forward, tcp=False, client=client[0])
        if reply is not None:  # None: the dialect sends nothing when no upstream answered (dnsd.core.dialect)
            listener.send_datagram(reply, client)
