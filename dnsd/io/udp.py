"""A listener's UDP: one datagram a read when quiet, batches when busy (one recvmmsg or sendmmsg, many datagrams).

Python's socket module moves one datagram per call, and each call is a trip into
the kernel and back through the interpreter; at tens of thousands of queries a
second those trips cost more than the answering does. ``DatagramBatch`` keeps
preallocated message headers and buffers and calls the two system calls through
ctypes (Python has no binding for them).

``serve`` is the loop of a listener's own thread. Unless queries wait in the
queue, every query is a wake-up of that thread, and the wake-up (the kernel's
switch to the thread and back) costs more than the answering, so the loop reads
one datagram at a time while it keeps up (``leaves_batches`` decides). With the
compiled ``dnsd.io._replay`` (dnsd/io/_replay.c) those reads are C: it sends a reply
the answerer remembered straight from the answerer's memo (``Answerer.replay_table``)
and hands every other datagram back here, where it is answered as ever. The
interpreter's part of a wake-up (a few µs: the socket module's address tuples,
the frames of the answering) was what made dnsd's quiet queries cost more CPU
than dnsmasq's (issue 18; README, Benchmarks). It reads alone until
``BACKLOG_RUN`` datagrams in a row were waiting in the queue when their read was
asked, or arrived within ``QUEUED_INTERVAL`` of the one before (over 100,000 a
second): the listener is behind, or about to be. The arrival times are the
kernel's (``SO_TIMESTAMPNS``), not the time between reads, which holds the
answering too: on a slow or busy machine that took longer than
``QUEUED_INTERVAL`` while the queue grew, and such a listener read alone, two
system calls a query, at saturation (issue 23). Without the compiled module the
lone reads are the socket module's ``recvfrom_into`` and ``sendto`` (C calls
with no ctypes conversion and no message headers to reset), and a read that
found a datagram within half a window of asking ends them, from some twenty
thousand queries a second.

Behind, it reads in batches: block until at least one datagram came, answer
every one that is there, send all the replies with one call, two system calls
through ctypes without argument conversion and only the used message headers
reset. While queries keep coming faster than two a window it lets the next ones
gather before reading again: as long as half a batch takes to arrive at the rate
just seen, at most one ``window`` (0.1 ms, so a gathered query waits at most that
long and on average half as long). A saturated listener (a full batch, or half a
batch in less time than answering took) reads on at once and adds no wait (the
interrupt moderation of network cards, applied to a socket); one that read
batches ``SATURATED_WAKEUPS`` wake-ups in a row, at more than a query per
``BATCH_EXIT_INTERVAL``, lets half a batch gather for up to ``SATURATED_WINDOW``
instead (``gather_window``), so a client with many queries in flight gets its
replies in bursts. It reads alone again once a read that followed no pause had
to wait (the queue was empty), or once the queries that came during a pause came
further apart than ``BATCH_EXIT_INTERVAL`` (the compiled loop's) or half a
window on average (``leaves_batches``). A busy-poll (spinning on non-blocking
reads before sleeping) is not used: it saves a wake-up only by spending the time
until the next query, 500 to 20 µs at 2,000 to 50,000 queries a second, which is
more than dnsd spends per query at each of those rates (README, Benchmarks).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import socket
import threading
import time
from collections.abc import Callable

from dnsd.core.config import DEFAULT_UDP_WINDOW
from dnsd.core.stats import Stats
from netcore.system.linux import LIBC

try:  # the compiled loop of a quiet listener (dnsd/io/_replay.c); without it the socket module's calls do
    from dnsd.io import _replay
except ImportError:
    _replay = None

BATCH = 64  # datagrams per system call
SLOT = 65536  # bytes per datagram buffer: any UDP payload fits (pages are only touched as far as used)
_IP_NAMES = 4096  # IPv4 sender addresses whose spelling a batch remembers
DEFAULT_WINDOW = DEFAULT_UDP_WINDOW  # seconds, the longest a listener lets queries gather; see the module's docstring
MSG_WAITFORONE = 0x10000  # recvmmsg: block for the first datagram only, then take what is queued
MSG_DONTWAIT = socket.MSG_DONTWAIT
_MIN_PER_WINDOW = 2  # queries a window below which a listener counts as quiet (see gather_pause)
# the compiled loop (dnsd/io/_replay.c): so many datagrams in a row that were waiting in the queue when their read
# was asked, or arrived within QUEUED_INTERVAL of the one before, mean the listener is behind and turns to batches
QUEUED_INTERVAL = 0.00001  # seconds
BACKLOG_RUN = 4
# ...and its batches end once a wake-up's queries came further apart than this on average (not at QUEUED_INTERVAL
# itself: a saturated listener measures about that, and flipping to lone reads there costs 2 system calls a query)
BATCH_EXIT_INTERVAL = 0.000015  # seconds
# a listener that read in batches this many wake-ups in a row, the last of them at more than a query per
# BATCH_EXIT_INTERVAL, is saturated: it may let queries gather for up to SATURATED_WINDOW (never less than its
# window), so its replies leave in bursts that a client reads with few wake-ups (see gather_window)
SATURATED_WAKEUPS = 8
SATURATED_WINDOW = 0.001  # seconds
TIMER_SLACK = 0.000005  # seconds a listener thread's sleep may overrun (Linux's default is 50 µs; see serve)
PR_SET_TIMERSLACK = 29  # prctl(2)
# socket(7): every datagram comes with the time it arrived (CLOCK_REALTIME, ns) as an SCM_TIMESTAMPNS message, so
# the listener knows whether it was waiting in the queue when the read was asked (the socket module lacks the name)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_CONTROL = 32  # bytes of ancillary data per datagram: a cmsghdr (16 bytes) and the timespec (16)


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.c_void_p),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("length", ctypes.c_uint)]


# No argtypes: converting five arguments through them costs 0.8 µs a call, a tenth of a lone query's
# answering; every argument is passed as what C expects instead (small ints as int, pointers as c_void_p).
_recvmmsg = LIBC.recvmmsg  # (int fd, struct mmsghdr *, unsigned int vlen, int flags, struct timespec *) -> int
_recvmmsg.restype = ctypes.c_int
_sendmmsg = LIBC.sendmmsg  # (int fd, struct mmsghdr *, unsigned int vlen, int flags) -> int
_sendmmsg.restype = ctypes.c_int

_WORD = ctypes.sizeof(ctypes.c_void_p)
assert ctypes.sizeof(ctypes.c_size_t) == _WORD == 8, "a 64-bit Linux is needed"
_HEADER_WORDS = ctypes.sizeof(_MMsgHdr) // _WORD  # 64-bit words per message header
_HEADER_INTS = ctypes.sizeof(_MMsgHdr) // 4  # 32-bit words per message header
_HEADER_BYTES = ctypes.sizeof(_MMsgHdr)
_LENGTH_INDEX = _MMsgHdr.length.offset // 4  # of a header viewed as 32-bit words: bytes received
_NAME_INDEX = _MsgHdr.name.offset // _WORD  # of a header viewed as 64-bit words: the address pointer
_CONTROL_LENGTH_INDEX = _MsgHdr.controllen.offset // 4  # of a header viewed as 32-bit words: ancillary bytes received
_IOV_LENGTH_INDEX = _IoVec.length.offset // _WORD
_IOV_WORDS = ctypes.sizeof(_IoVec) // _WORD
_ADDRESS_SIZE = {socket.AF_INET: 16, socket.AF_INET6: 28}  # sockaddr_in, sockaddr_in6


def _address_of(buffer) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))


class DatagramBatch:
    """Up to ``size`` datagrams in and out of one socket per system call.

    ``receive`` waits for datagrams and takes what is queued; ``answer_all``
    answers them and sends the replies in one go. A reply goes to the very
    ``sockaddr`` the kernel wrote on receiving: addresses are only decoded to be
    looked up (and for forwarding, rarely). It turns on the socket's arrival times
    (``SO_TIMESTAMPNS``; ``first_arrival``), which the compiled loop reads too.
    """

    def __init__(self, sock: socket.socket, size: int = BATCH):
        self.sock = sock
        self.fd = sock.fileno()
        with contextlib.suppress(OSError):  # without them, the time a read waited stands in (see first_arrival)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.size = size
        self.family = sock.family
        address_size = _ADDRESS_SIZE[sock.family]
        self._address_size = address_size
        # anonymous maps: zero pages until written, so unused room costs no memory
        self._in = mmap.mmap(-1, size * SLOT, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._out = mmap.mmap(-1, size * SLOT, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._addresses = bytearray(size * address_size)
        self._control = bytearray(size * _CONTROL)
        self._control_words = memoryview(self._control).cast("q")
        self.lone = bytearray(SLOT)  # the buffer of a read of one datagram (see ``serve``)
        self.lone_view = memoryview(self.lone)
        self._in_view = memoryview(self._in)
        self._out_view = memoryview(self._out)
        in_base, out_base = _address_of(self._in), _address_of(self._out)
        self._addresses_base = _address_of(self._addresses)
        control_base = _address_of(self._control)
        self._in_iov = (_IoVec * size)()
        self._out_iov = (_IoVec * size)()
        self._in_headers = (_MMsgHdr * size)()
        self._out_headers = (_MMsgHdr * size)()
        for i in range(size):
            self._in_iov[i].base = in_base + i * SLOT
            self._in_iov[i].length = SLOT
            self._out_iov[i].base = out_base + i * SLOT
            incoming, outgoing = self._in_headers[i].hdr, self._out_headers[i].hdr
            incoming.name = self._addresses_base + i * address_size
            incoming.namelen = address_size
            incoming.iov = ctypes.addressof(self._in_iov[i])
            incoming.iovlen = 1
            incoming.control = control_base + i * _CONTROL
            incoming.controllen = _CONTROL
            outgoing.namelen = address_size
            outgoing.iov = ctypes.addressof(self._out_iov[i])
            outgoing.iovlen = 1
        # the kernel overwrites address lengths, byte counts and flags on receiving: reset from this copy
        self._in_template = memoryview(bytes(self._in_headers))
        self._in_bytes = memoryview(self._in_headers).cast("B")
        self._in_words = self._in_bytes.cast("I")
        self._out_words = memoryview(self._out_headers).cast("B").cast("Q")
        self._out_iov_words = memoryview(self._out_iov).cast("B").cast("Q")
        self._in_headers_pointer = ctypes.c_void_p(ctypes.addressof(self._in_headers))
        self._out_headers_address = ctypes.addressof(self._out_headers)
        self._out_headers_pointer = ctypes.c_void_p(self._out_headers_address)
        # IPv4 senders: their address as a 32-bit word (index 4 i + 1) -> its spelling, at most _IP_NAMES of them
        self._address_words = memoryview(self._addresses).cast("I") if address_size == 16 else None
        self._ip_names: dict[int, str] = {}
        self.count = 0
        self.queued = 0

    def receive(self, flags: int = MSG_WAITFORONE) -> int:
        """Wait for at least one datagram, take up to ``size``; 0 if the socket was shut down. Raises OSError.

        Only the headers the last call filled are reset (the kernel writes no others): a wake-up
        for one query touches one header, not all ``size`` of them.
        """
        used = self.count * _HEADER_BYTES
        if used:
            self._in_bytes[:used] = self._in_template[:used]
        count = _recvmmsg(self.fd, self._in_headers_pointer, self.size, flags, None)
        if count < 0:
            self.count = 0
            code = ctypes.get_errno()
            raise OSError(code, errno.errorcode.get(code, str(code)))
        self.count = count
        return count

    def first_arrival(self) -> float | None:
        """When the first datagram of the last ``receive`` arrived (``time.time()``'s clock, seconds), from the
        kernel's SCM_TIMESTAMPNS; None if it came without one."""
        if self.count and self._in_words[_CONTROL_LENGTH_INDEX] >= _CONTROL:
            words = self._control_words  # a cmsghdr (length; level and type), then the timespec
            if words[1] == socket.SOL_SOCKET | SO_TIMESTAMPNS << 32:
                return words[2] + words[3] * 1e-9
        return None

    def client_ip(self, i: int) -> str:
        """The sender's address, spelled as ``socket.inet_ntop`` spells it."""
        start = i * self._address_size
        if self.family == socket.AF_INET:
            return socket.inet_ntoa(self._addresses[start + 4:start + 8])
        return socket.inet_ntop(socket.AF_INET6, self._addresses[start + 8:start + 24])

    def client(self, i: int) -> tuple:
        """The sender as a socket address tuple, for ``socket.sendto``."""
        start = i * self._address_size
        port = int.from_bytes(self._addresses[start + 2:start + 4], "big")
        if self.family == socket.AF_INET:
            return (self.client_ip(i), port)
        flowinfo = int.from_bytes(self._addresses[start + 4:start + 8], "big")
        scope = int.from_bytes(self._addresses[start + 24:start + 28], "little")
        return (self.client_ip(i), port, flowinfo, scope)

    def answer_all(self, answer: Callable[[bytes, str], object], forward: Callable[[object, tuple], None]) -> int:
        """Answer every received message and send the replies (see ``serve``); returns how many replies went out.

        This loop runs once per query, so it reads the buffers through
        memoryviews and keeps everything in locals: a helper call per query
        would cost as much as the answering.
        """
        in_view, lengths, out_view = self._in_view, self._in_words, self._out_view
        out_lengths, out_names = self._out_iov_words, self._out_words
        names, address_size, addresses_base = self._ip_names, self._address_size, self._addresses_base
        words = self._address_words
        queued = self.queued
        for i in range(self.count):
            start = i * SLOT
            data = in_view[start:start + lengths[i * _HEADER_INTS + _LENGTH_INDEX]].tobytes()
            if words is not None:  # IPv4: the address as one 32-bit word, its spelling remembered
                ip = names.get(words[i * 4 + 1])
                if ip is None:
                    ip = self._remember_ip(i)
            else:
                ip = self.client_ip(i)
            result = answer(data, ip)
            if type(result) is bytes:
                size = len(result)
                if size > SLOT:  # no UDP payload is that large: a bug upstream, dropped
                    continue
                start = queued * SLOT
                out_view[start:start + size] = result
                out_lengths[queued * _IOV_WORDS + _IOV_LENGTH_INDEX] = size
                out_names[queued * _HEADER_WORDS + _NAME_INDEX] = addresses_base + i * address_size
                queued += 1
            elif result is not None:
                forward(result, self.client(i))
        self.queued = queued
        if queued:
            self.send()
        return queued

    def _remember_ip(self, i: int) -> str:
        if len(self._ip_names) >= _IP_NAMES:
            self._ip_names.clear()
        ip = self._ip_names[self._address_words[i * 4 + 1]] = self.client_ip(i)
        return ip

    def send(self) -> None:
        """Send the queued replies; one that cannot go at once is dropped, as UDP may."""
        queued, sent = self.queued, 0
        self.queued = 0
        while sent < queued:
            headers = (self._out_headers_pointer if not sent
                       else ctypes.c_void_p(self._out_headers_address + sent * _HEADER_BYTES))
            count = _sendmmsg(self.fd, headers, queued - sent, MSG_DONTWAIT)
            if count < 0:
                if ctypes.get_errno() == errno.EINTR:
                    continue
                count = 1  # the first unsent reply cannot go (no route to its client, buffer full): skip it
            sent += count


def serve(batch: DatagramBatch, answer: Callable[[bytes, str], object], forward: Callable[[object, tuple], None],
          stopping: threading.Event, window: float = DEFAULT_WINDOW, stats: Stats | None = None,
          replay_cell: list | None = None, remember: Callable[[bytes, str], None] | None = None) -> None:
    """Answer datagrams on ``batch``'s socket until ``stopping`` is set and the socket shut down.

    ``answer(message, client_ip)`` returns reply bytes, None to drop, or anything
    else to be passed on as ``forward(result, client_address)`` (which must be
    safe to call from this thread). Quiet, it reads one datagram at a time, busy, in
    batches (``leaves_batches``; the module's docstring says why). The replies sent are
    counted in ``stats.answered_udp``. Runs in the calling thread, which it
    gives a timer slack of ``TIMER_SLACK`` so that a pause of ``gather_pause`` ends
    when it should (see ``set_timer_slack``).

    With ``replay_cell`` (``Answerer.replay_table``) and the compiled ``dnsd.io._replay``, a quiet
    listener's reads and the replies the answerer remembered are ``_replay.replay``'s, in C;
    every other datagram comes back here, and after answering one from a client the table does not
    know yet with a reply, ``remember(address_key, client_ip)`` (``Answerer.remember_client``) lets its
    next ones be replayed. ``stats.observe_batch`` (metrics) is then not called for the replayed replies:
    a server with metrics passes no cell.
    """
    if stats is None:
        stats = Stats()
    if window:
        set_timer_slack(TIMER_SLACK)
    receive, answer_all, first_arrival = batch.receive, batch.answer_all, batch.first_arrival
    receive_one, send_one = batch.sock.recvfrom_into, batch.sock.sendto
    replay = _replay.replay if _replay is not None and replay_cell is not None else None
    fd = batch.fd
    lone, lone_view = batch.lone, batch.lone_view
    scoped = batch.family == socket.AF_INET6
    monotonic, clock, sleep, size = time.monotonic, time.time, time.sleep, batch.size
    last_wake = -1.0
    quiet = QUEUED_INTERVAL if replay is not None else quiet_interval(window)
    leave = BATCH_EXIT_INTERVAL if replay is not None else quiet  # batches end at this spacing (leaves_batches)
    run = 0
    arrived = 0.0  # the compiled loop: when the last datagram it read arrived (time.time()'s clock)
    batched = 0  # wake-ups in a row that read a batch and stayed with batches
    paused = False  # the last batch was followed by a pause that let queries gather
    alone = True  # one datagram per read, in C or through Python's socket calls (see leaves_batches)
    while True:
        if alone:  # runs once per query Python answers while the listener keeps up: no call that is not needed
            try:
                if replay is not None:  # run: datagrams in a row that were queued, whoever answered them
                    length, client, key, woke, run, arrived = replay(fd, lone, replay_cell, quiet, arrived, run,
                                                                     stats, BACKLOG_RUN)
                    behind = run >= BACKLOG_RUN
                else:  # behind: the read found a datagram within ``quiet`` of asking (the answering before not counted)
                    asked = monotonic()
                    length, client = receive_one(lone)
                    woke = monotonic()
                    key, behind = None, woke - asked <= quiet
            except OSError:
                if stopping.is_set():
                    return
                raise
            last_wake = woke
            if client is None:  # a shut-down socket
                if stopping.is_set():
                    return
                continue
            ip = client[0]
            if scoped and "%" in ip:  # an IPv6 link-local sender: Python adds its scope, inet_ntop does not
                ip = ip.partition("%")[0]
            result = answer(lone_view[:length].tobytes(), ip)
            if result.__class__ is bytes:
                if len(result) <= SLOT:  # no UDP payload is larger: a bug upstream, dropped
                    try:  # noqa: SIM105 - contextlib.suppress would build an object per query
                        send_one(result, MSG_DONTWAIT, client)
                    except OSError:  # no route to the client, buffer full: dropped, as UDP may
                        pass
                    stats.answered_udp += 1
                    if key is not None:
                        remember(key, ip)
                    observe = stats.observe_batch
                    if observe is not None:
                        observe(batch, monotonic() - woke, 1)
            elif result is not None:
                forward(result, client)
            alone = not behind
            continue
        if stopping.is_set():  # a shut-down socket reads as one empty datagram, so this is checked each time
            return
        asked, asked_at = monotonic(), clock()
        try:
            count = receive()
        except OSError as err:
            if err.errno in (errno.EINTR, errno.EAGAIN):
                continue
            if stopping.is_set():
                return
            raise
        if count == 0:
            continue
        woke = monotonic()
        first = first_arrival()  # the queue was empty when the read was asked if the first came after that
        emptied = first > asked_at if first is not None else woke - asked > QUEUED_INTERVAL
        answered = answer_all(answer, forward)
        stats.answered_udp += answered  # after the call, not around it: no other thread's count gets lost
        observe = stats.observe_batch
        if observe is not None:  # metrics on: the batch's time, once per wake-up (dnsd.ops.metrics)
            observe(batch, monotonic() - woke, answered)
        interval = woke - last_wake
        last_wake = woke
        alone = leaves_batches(count, size, interval, emptied, paused, leave)
        run = 0
        batched = 0 if alone else batched + 1
        paused = False
        if window and not alone:
            pause = gather_pause(count, size, interval, gather_window(window, batched, count, interval))
            if pause:
                rest = pause - (monotonic() - woke)
                if rest > 0:
                    sleep(rest)
                    paused = True


def gather_window(window: float, batched: int, count: int, interval: float) -> float:
    """The longest a listener reading in batches lets queries gather now (seconds; see ``gather_pause``).

    ``window`` (the 0.1 ms of ``DEFAULT_WINDOW``, so a query waits at most that long below saturation),
    unless the listener is saturated: ``batched`` wake-ups in a row read batches, at least
    ``SATURATED_WAKEUPS``, and the last ``count`` queries came at more than one per
    ``BATCH_EXIT_INTERVAL`` in the ``interval`` (seconds) before it. Then up to ``SATURATED_WINDOW``
    (0f62df0's window): a client with many queries in flight (dnsperf at saturation) then gets its
    replies in bursts and reads them with few wake-ups of its own; with the short window it woke
    for every few replies, and dnsd's QPS fell from 1.07-1.14x dnsmasq's to 1.03-1.04x (issue 23).
    A window of 0 never waits.
    """
    if window and batched >= SATURATED_WAKEUPS and interval <= count * BATCH_EXIT_INTERVAL:
        return max(window, SATURATED_WINDOW)
    return window


def leaves_batches(count: int, size: int, interval: float, emptied: bool, paused: bool, leave: float) -> bool:
    """Whether a listener reading in batches should read alone again after a wake-up.

    ``count`` datagrams (of at most ``size``) came in the ``interval`` (seconds) since the wake-up
    before; ``emptied``: the queue was empty when the read that took them was asked (its first
    datagram arrived later, by the kernel's time stamp). After a pause (``paused``), what came
    meanwhile tells the rate: alone once they came further apart than ``leave`` on average, unless
    half a batch or more was there (still behind: ``reads_alone``). Without one, the queue tells:
    alone once it was empty. Not the rate alone: a saturated listener on a slow or busy machine sees
    a low rate, its own, while its queue stays full, and its lone reads would cost two system calls a
    query (issue 23).
    """
    if paused:
        return count < size // 2 and reads_alone(count, interval, leave)
    return emptied


def reads_alone(count: int, interval: float, quiet: float) -> bool:
    """Whether the next read should take one datagram alone, not a batch.

    ``count`` datagrams came in the ``interval`` (seconds) since the wake-up before: alone if
    they came further apart than ``quiet`` on average. For a listener reading through Python's
    socket calls ``quiet`` is ``quiet_interval(window)``: under ``_MIN_PER_WINDOW`` queries a
    window nothing would gather, and ``socket.recvfrom``/``sendto`` cost less per wake-up than
    the batch's ctypes calls. For one with the compiled loop it is ``BATCH_EXIT_INTERVAL``: its lone
    reads cost less than a batch's share of a wake-up up to saturation, where datagrams wait in
    the queue (README, Benchmarks). ``leaves_batches`` says when this rule applies.
    """
    return interval > count * quiet


def quiet_interval(window: float) -> float:
    """The time (seconds) between lone queries above which a listener counts as quiet (see ``reads_alone``)."""
    return (window or DEFAULT_WINDOW) / _MIN_PER_WINDOW


def set_timer_slack(seconds: float) -> None:
    """Let the kernel end this thread's sleeps at most ``seconds`` late (prctl PR_SET_TIMERSLACK, this thread only).

    Linux lets a normal thread's timers fire up to 50 µs late, to merge their
    wake-ups (prctl(2)); a pause of a tenth of a millisecond would then last
    half as long again. Raises OSError if the kernel refuses.
    """
    if LIBC.prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(max(1, round(seconds * 1e9))), 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl(PR_SET_TIMERSLACK): {errno.errorcode.get(code, str(code))}")


def gather_pause(count: int, size: int, interval: float, window: float) -> float:
    """How long after a wake-up to let queries gather before reading again (0: read on at once).

    ``count`` queries came in the ``interval`` since the wake-up before. A full
    batch means more are waiting: read on. Below the rate of ``_MIN_PER_WINDOW``
    queries a window there is nothing to gather: read on. Otherwise wait until
    half a batch has come at the rate just seen, never longer than ``window``.
    """
    if count >= size or interval <= 0 or count * window < _MIN_PER_WINDOW * interval:
        return 0.0
    return min(window, interval * (size // 2) / count)
