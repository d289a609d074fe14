"""netcore's command line as a shell: one handler per subcommand, and every error one line."""

from __future__ import annotations

import argparse

import pytest

from netcore import cli
from netcore.agent.server import AGENT_VERBS
from netcore.cli import handlers, parser


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    names = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _subcommands(sub, f"{prefix}{name} ")
                names += nested or [f"{prefix}{name}"]
    return names


def test_every_subcommand_has_its_handler():
    assert sorted(_subcommands(parser.build_parser())) == sorted([*handlers.HANDLERS, *AGENT_VERBS,
                                                                  *parser.LOCAL_VERBS])


@pytest.mark.parametrize("argv", [[], ["bogus"], ["network"], ["network", "create"], ["run", "--bogus"],
                                  ["network", "create", "-o", "novalue", "n"], ["rm"], ["up"],
                                  # issue 14: malformed -p specs, before anything is written
                                  ["run", "-p", "80:"], ["run", "-p", "70000:80"], ["run", "-p", "8000-8002:80-81"],
                                  ["run", "-p", "1.2.3.4.5::80"], ["run", "-p", "80/icmp"], ["port", "web", "x/tcp"],
                                  ["dns-options", "bogus"]])
def test_a_usage_error_is_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("netcore"), err


def test_an_os_error_is_one_line_naming_the_command_and_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    monkeypatch.setattr(cli, "missing_capabilities", lambda: [])  # as root, or an unprivileged test run
    (tmp_path / "file").write_text("")
    state_dir = str(tmp_path / "file" / "state")
    assert cli.main(["--state-dir", state_dir, "ps"]) == 1
    err = capsys.readouterr().err
    assert err == f"netcore: ps: Not a directory: {state_dir}\n"


def test_netcore_debug_shows_the_traceback_instead(tmp_path, monkeypatch):
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    monkeypatch.setattr(cli, "missing_capabilities", lambda: [])
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        cli.main(["--state-dir", str(tmp_path / "file" / "state"), "ps"])


def test_missing_privileges_are_one_line_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "missing_capabilities", lambda: ["CAP_NET_ADMIN"])
    state_dir = tmp_path / "state"
    assert cli.main(["--state-dir", str(state_dir), "network", "ls"]) == 1
    assert capsys.readouterr().err == ("netcore: netcore must run as root with CAP_NET_ADMIN: it creates namespaces "
                                       "and links (permission denied)\n")
    assert not state_dir.exists()


PARSED = [["run", "--name", "web", "--net", "app", "-p", "8080:80"], ["--netns", "gw", "rm", "-f", "a", "b"],
          ["--netns=gw", "--state-dir", "/s", "network", "create", "--subnet", "10.0.0.0/24", "n"],
          ["compose", "-f", "a.yaml", "up", "-d"], ["up", "-f", "x.yaml"], ["agent", "status"],
          ["dns-options", "set", "--", "--metrics"], ["run", "--", "sh", "-c", "x"], ["exec", "c", "--", "ls"],
          ["ps", "-a", "--format", "json"], ["port", "web", "80/tcp"], ["logs", "-f", "c"], ["stop", "-t", "3", "a"]]
REFUSED = [[], ["bogus"], ["network"], ["run", "--bogus"], ["--netns"], ["--netns", "--state-dir", "x", "ps"],
           ["agent", "bogus"], ["run", "--nam", "x"], ["-h"], ["run", "--help"], ["network", "--help"]]


@pytest.mark.parametrize("argv", PARSED)
def test_the_parser_of_one_command_parses_it_as_the_whole_parser_does(argv):
    assert parser.build_parser(parser.command_word(argv)).parse_args(argv) == parser.build_parser().parse_args(argv)


@pytest.mark.parametrize("argv", REFUSED)
def test_the_parser_of_one_command_refuses_and_helps_as_the_whole_parser_does(argv, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    said = []
    for built in (parser.build_parser(parser.command_word(argv)), parser.build_parser()):
        with pytest.raises(SystemExit) as exited:
            built.parse_args(argv)
        said.append((exited.value.code, capsys.readouterr()))
    assert said[0] == said[1]
