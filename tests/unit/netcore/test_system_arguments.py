"""netcore.system.arguments: the one home of the one-line usage error, for every command of the project (issue 25,
item 5): ``netcore``, ``netcored``, ``dnsd``, ``dnsd cni-install`` and dnsd's ``aardvark-dns`` each word it as
before."""

from __future__ import annotations

import pytest

from dnsd import __main__ as dnsd_main, aardvark
from dnsd.cni import install as cni_install
from netcore.agent import __main__ as netcored
from netcore.cli.parser import build_parser
from netcore.system.arguments import OneLineParser


def usage_error(capsys, parse, argv) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    return exited.value.code, capsys.readouterr().err


def test_each_command_words_its_usage_errors_on_one_line(capsys, tmp_path):
    assert usage_error(capsys, build_parser().parse_args, ["run", "--net"]) == (
        2, "netcore run: argument --net/--network: expected one argument (see netcore run --help)\n")
    assert usage_error(capsys, build_parser().parse_args, ["run", "--nam", "web"]) == (
        2, "netcore: unrecognized arguments: --nam (see netcore --help)\n")  # no abbreviation taken
    assert usage_error(capsys, dnsd_main.parse_args, ["--state-dir", str(tmp_path), "--ttl", "-1"]) == (
        2, "dnsd: argument --ttl: invalid TTL (0 to 2147483647 seconds) value: '-1'\n")
    assert usage_error(capsys, dnsd_main.parse_args, ["--state-dir", str(tmp_path), "--cache-s", "1"]) == (
        2, "dnsd: unrecognized arguments: --cache-s 1\n")  # no abbreviation taken for an option
    assert usage_error(capsys, aardvark.parse_args, ["-p", "0", "run"]) == (
        2, "aardvark-dns (dnsd): argument -p/--port: invalid port (1 to 65535) value: '0'\n")
    assert usage_error(capsys, cni_install.main, ["--state-dir", "relative"]) == (
        2, "dnsd cni-install: --state-dir must be an absolute path (got 'relative')\n")
    assert usage_error(capsys, netcored.parse_args, ["--state-dir"]) == (
        2, "netcored: argument --state-dir: expected one argument\n")
    assert usage_error(capsys, netcored.parse_args, ["--net", "gw"]) == (
        2, "netcored: unrecognized arguments: --net gw\n")  # no abbreviation taken for --netns


def test_a_subcommand_parser_follows_its_parent():
    class Hinted(OneLineParser):
        help_hint = True

    parser = Hinted(prog="tool")
    sub = parser.add_subparsers(dest="verb").add_parser("go")
    assert isinstance(sub, Hinted) and sub.prog == "tool go"
