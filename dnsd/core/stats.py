"""dnsd's counters: one object that the answering core, the resolver, the listeners and the server share.

Each part bumps its own fields where the event happens; nothing on the
per-query fast path does (UDP replies are counted once per batch, see
``dnsd.io.udp.serve``). ``DnsServer.stats_report`` adds what its own parts know
(generation, listeners, open TCP connections) and the control socket's
``stats`` command gives it as one line of JSON.

Threads: the UDP threads of the listeners, the reload thread and the event
loop write here. Every write is one ``+=`` (or ``=``) of an attribute with no
call in between, which CPython's GIL never splits (it switches threads only at
calls and backward jumps), so no count is lost; a reader may see one field a
batch ahead of another.
"""

from __future__ import annotations

from collections.abc import Callable


class Stats:
    """Counts since dnsd started, and the forwarded queries in flight now."""

    __slots__ = ("answered_udp", "answered_tcp", "forwarded", "forward_servfail", "refused_inflight",
                 "nxdomain_no_upstream", "malformed", "last_malformed", "internal_errors", "last_internal_error",
                 "in_flight", "reloads_full", "reloads_patch", "truncated_retried", "forward_merged",
                 "spoofed_replies", "spoof_detected", "forward_loops", "upstream_errors", "observe_batch")

    def __init__(self):
        self.answered_udp = 0  # replies the UDP threads sent themselves: every reply but forwarded ones
        self.answered_tcp = 0  # the same over TCP
        self.forwarded = 0  # queries asked upstream (past the in-flight caps)
        self.forward_servfail = 0  # of those, answered SERVFAIL: no server gave a usable reply in time
        self.refused_inflight = 0  # queries REFUSED at once at an in-flight cap (all clients', or one client's)
        self.nxdomain_no_upstream = 0  # names not held, answered NXDOMAIN as their source has no way out
        self.malformed = 0  # messages answered FORMERR or NOTIMP, or dropped, as not a well-formed query
        self.last_malformed = ("", "")  # (what was wrong, source address) of the latest
        self.internal_errors = 0  # messages dropped on a bug in dnsd
        self.last_internal_error = ""  # repr of the latest one's exception
        self.in_flight = 0  # forwarded queries waiting for upstream now (the Forwarder's cap counts these)
        self.reloads_full = 0  # snapshots built from scratch
        self.reloads_patch = 0  # snapshots patched from the last one
        self.truncated_retried = 0  # upstream UDP replies with TC set, asked again over TCP
        self.forward_merged = 0  # upstream queries not sent: the same question was out at that upstream already
        self.spoofed_replies = 0  # datagrams on an upstream socket that did not answer its query (ID, question)
        self.spoof_detected = 0  # upstream UDP queries abandoned for a flood of those and asked over TCP instead
        self.forward_loops = 0  # queries not forwarded: to dnsd's own address, or come back through an upstream
        self.upstream_errors: dict[tuple[str, str], int] = {}  # (upstream "IP:PORT", reason) -> count
        # with metrics on: (the batch, seconds it took, replies it sent), called by each UDP thread per wake-up
        self.observe_batch: Callable[[object, float, int], None] | None = None

    def upstream_failed(self, upstream, kind: str) -> None:
        """Count an upstream that timed out (``kind`` "timeout"), failed (refused, unreachable: "error"), sent a
        reply that is not well-formed ("malformed"), or was not asked as it is dnsd itself ("loop").

        Called on the event loop only, so the read and write of the dict entry are never interleaved.
        """
        key = (f"{upstream.address}:{upstream.port}", kind)
        self.upstream_errors[key] = self.upstream_errors.get(key, 0) + 1

    def counts(self) -> dict[str, int]:
        """Every number above by its name (the latest malformed message and internal error left out)."""
        return {name: getattr(self, name) for name in self.__slots__
                if not name.startswith("last_") and name not in ("upstream_errors", "observe_batch")}
