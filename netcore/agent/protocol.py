"""netcored's wire protocol, pure: JSON lines over the agent's unix socket (``STATE_DIR/netcored.sock``).

One connection carries one request. The client writes one line, a command (its parsed arguments)::

    {"netcored": 3, "verb": "run", "params": {...}, "netns": "NAME" or null, "debug": false}

or a command line, which the agent parses itself with the same parser (netcore.cli.parser)::

    {"netcored": 3, "argv": ["run", "--name", "web"], "netns": "NAME" or null, "debug": false}

with, for a Compose command (netcore.cli.CONTEXT_COMMANDS), the client's working directory and environment,
which Compose reads its files from and interpolates with as ``docker compose`` would in the client's shell::

    {"netcored": 3, "argv": ["compose", "up", "-d"], ..., "cwd": "/home/me/app", "environ": {"TAG": "1.2"}}

and reads lines until the last one::

    {"out": "TEXT"}      text for the client's stdout (a command's output, several lines at once); it may
                         carry ``"interruptible": true``: from then on Ctrl-C asks for the command's graceful
                         end (an attached ``compose up``: its services stopped), see below
    {"err": "TEXT"}      one line for the client's stderr (a note, a warning, an error), without "netcore: "
    {"exit": N, ...}     the last line: the command's exit status, and what the verb returns beside it
                         (``run`` the container's network namespace for ``-- CMD``, ``agent status`` its state;
                         for a command line, ``"parse"``: the agent did not run it, the client parses it itself
                         and sends the command, and ``"command": true`` for a ``run ... -- CMD``)

The command line is what the CLI sends when an agent answers (netcore.cli): parsing costs the client argparse
and everything under it, the most of what it would import; the agent has the parser built already. A command
line that does not parse (or asks for help), or whose command needs more of the client than the line holds
(a confirmation, the client's version, Compose's standard input for ``-f -``, a Compose command sent without
its directory and environment), gets ``"parse"`` back: the client parses it itself and says why in its own
words, or sends the command, as it does when no agent runs.

Ctrl-C. A client interrupted while it reads a reply that was marked interruptible writes one more line,
``{"interrupt": true}``, and reads on: the agent ends the command as Docker Compose ends an attached ``up``
(the services stopped, one line each, exit 130). Interrupted again, or interrupted during any other reply,
it closes the connection and exits 130 at once; the agent then stops following and finishes an action it
began (netcore.cli).

Why JSON lines: the standard library has everything both sides need, so the thin client imports nothing
heavy (the ``_json`` C module under ``json`` for a reply, ``json.dumps`` for a command: a few milliseconds);
a reply can stream (``logs -f``, Compose's progress lines) line by line; a person can speak it with
``socat``; and every line is self-delimiting, so a malformed one costs one error line, not the connection's
framing. An RPC library would cost the client its import time and the socket a second framing.

Versions: every request carries ``netcored``, the protocol version the client speaks (2 since the command
line, 3 since interruptible replies). An agent of another version answers one ``err`` line naming both and
exits 2, serving on (netcore.agent.server). A request line longer than ``MAX_REQUEST`` bytes, malformed JSON,
a missing field or an unknown verb each get one ``err`` line and exit 2 as well.
"""

from __future__ import annotations

try:  # the C parts of json: a reply read and a command line written without json's modules (and re under them)
    from _json import encode_basestring_ascii as _string, make_scanner as _make_scanner
except ImportError:  # another Python than CPython
    _string = _make_scanner = None

PROTOCOL = 3  # bump on any change a client of the other version would misread (2: the command line; 3: an
# interruptible reply, which a client of 2 would refuse as malformed)
INTERRUPT = b'{"interrupt": true}\n'  # what an interrupted client writes after its request (see above)
GRACEFUL = "Gracefully stopping... (press Ctrl+C again to force)"  # what it says then, as Docker Compose does
ANY_VERSION = frozenset({"agent status", "agent stop"})  # served whatever version asks: an agent of another
# release can always be stopped (netcore agent stop) and the next command starts one of the client's
MAX_REQUEST = 1 << 20  # bytes of one request line, newline included
USAGE = 2  # exit status of a request the agent refuses to read (as a usage error on the command line)


class ProtocolError(ValueError):
    """A line the other side cannot take; ``str()`` is one line for a person, without a "netcore:" prefix."""


class Request:
    """One request: ``verb`` (a command as users type it: ``run``, ``network create``, ``agent status``), its
    ``params`` (the command's parsed arguments, JSON values), the gateway namespace the client means
    (``netns``, None: the host's; the agent refuses a request for another one) and ``debug`` (an unexpected
    error's traceback goes back to the client too: NETCORE_DEBUG=1); or, with ``argv`` (a list of strings),
    the command line itself instead of ``verb`` and ``params``, and for a Compose command line the client's
    working directory ``cwd`` and its environment ``environ`` ({name: value}).

    A plain class, not a dataclass nor a named tuple: the client imports this module, and ``dataclasses``
    (inspect, ast, dis) or ``collections`` would cost a command more than the rest of what it imports."""

    __slots__ = ("argv", "cwd", "debug", "environ", "netns", "params", "verb")
    __hash__ = None  # params is a dict

    def __init__(self, verb: str, params: dict, netns: str | None = None, debug: bool = False,
                 argv: list[str] | None = None, cwd: str | None = None, environ: dict[str, str] | None = None):
        self.verb, self.params, self.netns, self.debug, self.argv = verb, params, netns, debug, argv
        self.cwd, self.environ = cwd, environ

    _NAMES = ("verb", "params", "netns", "debug", "argv", "cwd", "environ")

    def _fields(self) -> tuple:
        return self.verb, self.params, self.netns, self.debug, self.argv, self.cwd, self.environ

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Request) and self._fields() == other._fields()

    def __repr__(self) -> str:
        return "Request({})".format(", ".join(f"{name}={value!r}" for name, value in zip(
            self._NAMES, self._fields(), strict=True)))

    def encode(self) -> bytes:
        if self.argv is None:
            return encode({"netcored": PROTOCOL, "verb": self.verb, "params": self.params, "netns": self.netns,
                           "debug": self.debug})
        context = {} if self.cwd is None else {"cwd": self.cwd, "environ": self.environ or {}}
        if _string is None:
            return encode({"netcored": PROTOCOL, "argv": list(self.argv), "netns": self.netns, "debug": self.debug,
                           **context})
        netns = "null" if self.netns is None else _string(self.netns)
        if context:
            pairs = ",".join(f"{_string(k)}:{_string(v)}" for k, v in context["environ"].items())
            context_text = f',"cwd":{_string(context["cwd"])},"environ":{{{pairs}}}'
        else:
            context_text = ""
        return (f'{{"netcored":{PROTOCOL},"argv":[{",".join(map(_string, self.argv))}],"netns":{netns},'
                f'"debug":{"true" if self.debug else "false"}{context_text}}}\n').encode()


def encode(message: dict) -> bytes:
    """One line: ``message`` as compact JSON and a newline. TypeError for a value JSON cannot hold."""
    import json  # the agent's and a command's: a command line is written without it (Request.encode)

    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode_request(line: bytes, verbs: frozenset[str] | set[str]) -> Request:
    """The request on ``line`` (one line, newline optional). ProtocolError for a line that is too long, not
    JSON, not an object, of another protocol version, without a verb, with a verb not in ``verbs``, or
    with params that are not an object; for a command line, with an ``argv`` that is not a list of strings."""
    import json

    if len(line) > MAX_REQUEST:
        raise ProtocolError(f"request of {len(line)} bytes refused: at most {MAX_REQUEST}")
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProtocolError(f"malformed request: {err}") from None
    if not isinstance(message, dict):
        raise ProtocolError("malformed request: not a JSON object")
    version = message.get("netcored")
    if version != PROTOCOL and not (message.get("verb") in ANY_VERSION and "argv" not in message):
        raise ProtocolError(f"this netcore speaks protocol {version!r}, netcored speaks {PROTOCOL}: "
                            "use the same release for both (netcore agent stop; the next command starts one)")
    netns = message.get("netns")
    if netns is not None and not isinstance(netns, str):
        raise ProtocolError("malformed request: netns is not a string")
    if "argv" in message:
        argv = message["argv"]
        if not isinstance(argv, list) or not all(isinstance(word, str) for word in argv):
            raise ProtocolError("malformed request: argv is not a list of strings")
        cwd, environ = message.get("cwd"), message.get("environ")
        if cwd is not None and not isinstance(cwd, str):
            raise ProtocolError("malformed request: cwd is not a string")
        if environ is not None and not (isinstance(environ, dict)
                                        and all(isinstance(value, str) for value in environ.values())):
            raise ProtocolError("malformed request: environ is not an object of strings")
        return Request("", {}, netns, message.get("debug") is True, argv, cwd, environ)
    verb, params = message.get("verb"), message.get("params", {})
    if not isinstance(verb, str) or not verb:
        raise ProtocolError("malformed request: no verb")
    if verb not in verbs:
        raise ProtocolError(f"unknown verb {verb!r}")
    if not isinstance(params, dict):
        raise ProtocolError("malformed request: params is not a JSON object")
    return Request(verb, params, netns, message.get("debug") is True)


def decode_reply(line: bytes) -> dict:
    """One reply line as a dict with exactly one of ``out``, ``err`` or ``exit`` (an ``exit`` line may carry
    more keys, an ``out`` line ``interruptible``). ProtocolError for anything else: a client of another
    release reads one line, not a traceback."""
    try:
        message = _loads(line)
    except ValueError as err:  # UnicodeDecodeError, json.JSONDecodeError
        raise ProtocolError(f"malformed reply from netcored: {err}") from None
    if not isinstance(message, dict):
        raise ProtocolError("malformed reply from netcored: not a JSON object")
    if "exit" in message:
        if not isinstance(message["exit"], int):
            raise ProtocolError("malformed reply from netcored: exit is not a number")
        return message
    if len(message) == 1 and isinstance(message.get("out", message.get("err")), str):
        return message
    if len(message) == 2 and isinstance(message.get("out"), str) and message.get("interruptible") is True:
        return message
    raise ProtocolError(f"malformed reply from netcored: {sorted(message)}")


class _Decoding:
    """What ``_json.make_scanner`` reads of a decoder: json.loads's defaults."""

    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int, parse_constant = float, int, float  # float("NaN"), float("-Infinity"): json's


_scan = _make_scanner(_Decoding()) if _make_scanner is not None else None


def _loads(line: bytes):
    """``json.loads(line)`` for a reply line, through json's C scanner: without importing json and re.
    ValueError (json.JSONDecodeError, UnicodeDecodeError) for anything but one JSON value."""
    if _scan is None:
        import json

        return json.loads(line)
    text = line.decode().strip(" \t\r\n")
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        end = -1
    if end != len(text):  # nothing at the start (StopIteration), or something after the value
        raise ValueError(f"not one JSON value: {text[:40]!r}")
    return value


class LineReader:
    """Lines from a stream socket, at most ``limit`` bytes each (a longer one raises ProtocolError once its
    first ``limit`` bytes are in, so a peer cannot make the reader hold more). ``sock`` needs ``recv``."""

    def __init__(self, sock, limit: int = MAX_REQUEST):
        self._sock = sock
        self._limit = limit
        self._buffer = b""

    def readline(self) -> bytes | None:
        """The next line without its newline; None at the end of the stream (a last line without a newline
        is returned first). ProtocolError for a line over the limit."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = self._buffer[:end], self._buffer[end + 1:]
                return line
            if len(self._buffer) > self._limit:
                raise ProtocolError(f"request of more than {self._limit} bytes refused")
            chunk = self._sock.recv(65536)
            if not chunk:
                line, self._buffer = self._buffer, b""
                return line or None
            self._buffer += chunk
