"""dnsd.log and ports.log stay bounded (issue 23, item 6): copytruncate, so a writer with O_APPEND goes on."""

from __future__ import annotations

import os

from netcore.dnsd_protocol import OPTIONS_NAME
from netcore.dnsd_protocol.control import dnsd_options, write_dnsd_options
from netcore.system.logfile import rotate_log


def test_a_log_past_its_limit_is_copied_aside_and_truncated_in_place(tmp_path):
    log = str(tmp_path / "dnsd.log")
    writer = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # as dnsd's stdout is opened
    try:
        os.write(writer, b"a" * 100)
        assert rotate_log(log, max_bytes=100) is False  # at the limit: kept
        os.write(writer, b"b")
        inode = os.stat(log).st_ino
        assert rotate_log(log, max_bytes=100) is True
        assert os.path.getsize(log) == 0 and os.stat(log).st_ino == inode
        with open(log + ".1", "rb") as f:
            assert f.read() == b"a" * 100 + b"b"
        os.write(writer, b"next line\n")  # the writer's next line lands at the start of the truncated file
        with open(log, "rb") as f:
            assert f.read() == b"next line\n"
        os.write(writer, b"c" * 200)
        assert rotate_log(log, max_bytes=100) is True
        assert sorted(os.listdir(tmp_path)) == ["dnsd.log", "dnsd.log.1", "dnsd.log.2"]
        with open(log + ".2", "rb") as f:
            assert f.read() == b"a" * 100 + b"b"
        os.write(writer, b"d" * 200)
        assert rotate_log(log, max_bytes=100) is True  # the oldest goes: two backups at most
        assert sorted(os.listdir(tmp_path)) == ["dnsd.log", "dnsd.log.1", "dnsd.log.2"]
    finally:
        os.close(writer)
    assert rotate_log(str(tmp_path / "missing.log")) is False


def test_dns_options_are_written_whole_and_read_back(tmp_path):
    write_dnsd_options(str(tmp_path), ["--metrics", "--query-log", "/var/log/q.log"])
    assert dnsd_options(str(tmp_path)) == ["--metrics", "--query-log", "/var/log/q.log"]
    assert oct(os.stat(tmp_path / OPTIONS_NAME).st_mode & 0o777) == "0o600"
    write_dnsd_options(str(tmp_path), [])
    assert not os.path.exists(tmp_path / OPTIONS_NAME) and dnsd_options(str(tmp_path)) == []
