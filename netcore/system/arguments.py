"""The command lines' parser: a usage error is one line on stderr and a non-zero exit, never argparse's usage
block, and an abbreviation of a long option is never taken for the option (``--nam`` is not ``--name``).

The one home of that behaviour for every command of the project: ``netcore``, ``netcored``, ``dnsd``,
``dnsd cni-install`` and dnsd's ``aardvark-dns``. Imports only argparse: the thin ``netcore`` client loads it on
every command.
"""

from __future__ import annotations

import argparse


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are ``NAME: MESSAGE`` on one line and exit ``usage_status`` (2).

    ``NAME`` is ``error_name`` if given, else the parser's ``prog`` (a subcommand's parser says
    ``netcore run: ...``); with ``help_hint`` (a class attribute: a subclass sets it, and subcommands'
    parsers, of their parent's class, follow) the line ends ``(see PROG --help)``.
    """

    usage_status = 2
    help_hint = False

    def __init__(self, *args, error_name: str | None = None, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.error_name = error_name

    def error(self, message: str):
        hint = f" (see {self.prog} --help)" if self.help_hint else ""
        self.exit(self.usage_status, f"{self.error_name or self.prog}: {message}{hint}\n")
