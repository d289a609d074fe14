"""The one exception type users see: a message a person can act on; and the exit status of a command ended by
Ctrl-C."""


INTERRUPTED = 130  # 128 + SIGINT: the exit status of a command ended by Ctrl-C, as a shell reports one it killed


class NetcoreError(Exception):
    """A user error (bad input, unknown name, exhausted pool, missing privilege).

    The CLI prints ``str(err)`` as one line on stderr and exits with ``exit_code``.
    """

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class NotFound(NetcoreError):
    """An unknown network or container name/ID."""


class Conflict(NetcoreError):
    """A duplicate name, an address in use, a network still in use."""


class StoreError(NetcoreError):
    """The store refused or failed a write: the message says which, and that its transaction was rolled back."""


def os_error_text(err: OSError) -> str:
    """An OSError as one line, as the C library would say it: ``strerror: filename``, else the error's own text."""
    text = err.strerror or str(err)
    return f"{text}: {err.filename}" if err.filename else text
