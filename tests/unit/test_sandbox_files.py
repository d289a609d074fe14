"""A container's /etc/netns files change in place: same inode, exact content, never half a file (issue 11, item 5)."""

from __future__ import annotations

import os
import stat

import pytest

from netcore import sandbox


@pytest.fixture
def etc(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "ETC_NETNS", str(tmp_path / "netns"))
    return tmp_path / "netns" / "ns1"


def read(path) -> str:
    with open(path) as f:
        return f.read()


LONG = sandbox.resolv_conf(["10.1.0.1", "10.2.0.1", "10.3.0.1"])
SHORT = sandbox.resolv_conf([])


def test_first_write_creates_both_files_world_readable(etc):
    sandbox.write_etc("ns1", SHORT, "127.0.0.1\tlocalhost\n")
    assert read(etc / "resolv.conf") == SHORT and read(etc / "hosts") == "127.0.0.1\tlocalhost\n"
    for name in ("resolv.conf", "hosts"):
        assert stat.S_IMODE(os.stat(etc / name).st_mode) == 0o644
    assert sorted(os.listdir(etc)) == ["hosts", "resolv.conf"]  # no temporary file left behind


@pytest.mark.parametrize("first, second", [(SHORT, LONG), (LONG, SHORT), (LONG, LONG.replace("10.1", "10.9"))],
                         ids=["growing", "shrinking", "same-size"])
def test_rewrites_keep_the_inode_and_the_content_is_exact(etc, first, second):
    """A bind mount (what `exec` puts over /etc/resolv.conf) and an open handle see the new content."""
    sandbox.write_etc("ns1", first, "127.0.0.1\tlocalhost\n10.1.0.2\tweb\n")
    inodes = {name: os.stat(etc / name).st_ino for name in ("resolv.conf", "hosts")}
    with open(etc / "resolv.conf") as held:  # a reader that keeps its handle, as a bind mount does
        sandbox.write_etc("ns1", second, "127.0.0.1\tlocalhost\n")
        assert held.read() == second
    assert {name: os.stat(etc / name).st_ino for name in ("resolv.conf", "hosts")} == inodes
    assert read(etc / "resolv.conf") == second and read(etc / "hosts") == "127.0.0.1\tlocalhost\n"
    assert sorted(os.listdir(etc)) == ["hosts", "resolv.conf"]


def test_a_reader_between_the_two_steps_sees_whole_new_content_padded_with_newlines(etc, monkeypatch):
    """What a process reads if netcore dies between the write and the truncate: the new lines, then blank ones."""
    sandbox.write_etc("ns1", LONG, "127.0.0.1\tlocalhost\n")
    seen = []
    truncate = os.ftruncate

    def observing_truncate(fd, length):
        seen.append(read(etc / "resolv.conf"))
        truncate(fd, length)
    monkeypatch.setattr(os, "ftruncate", observing_truncate)
    sandbox.write_etc("ns1", SHORT, "127.0.0.1\tlocalhost\n")
    assert seen and seen[0] == SHORT + "\n" * (len(LONG) - len(SHORT))
    assert read(etc / "resolv.conf") == SHORT


def test_a_rewrite_always_changes_what_stat_shows(etc, monkeypatch):
    """glibc reloads resolv.conf when (inode, size, mtime, ctime) change: a same-size rewrite within one
    timestamp tick must still move the mtime, or a running process keeps the old servers."""
    sandbox.write_etc("ns1", LONG, "127.0.0.1\tlocalhost\n")
    frozen = os.stat(etc / "resolv.conf").st_mtime_ns
    real_pwrite = os.pwrite

    def pwrite_in_the_same_tick(fd, data, offset):
        written = real_pwrite(fd, data, offset)
        os.utime(fd, ns=(frozen, frozen))  # as a coarse clock would stamp it: the previous write's time
        return written
    monkeypatch.setattr(os, "pwrite", pwrite_in_the_same_tick)
    real_truncate = os.ftruncate
    monkeypatch.setattr(os, "ftruncate", lambda fd, n: (real_truncate(fd, n), os.utime(fd, ns=(frozen, frozen))))
    sandbox.write_etc("ns1", LONG.replace("10.1", "10.9"), "127.0.0.1\tlocalhost\n")
    assert os.stat(etc / "resolv.conf").st_mtime_ns != frozen


def test_unchanged_content_is_not_rewritten(etc):
    sandbox.write_etc("ns1", SHORT, "127.0.0.1\tlocalhost\n")
    before = os.stat(etc / "resolv.conf")
    sandbox.write_etc("ns1", SHORT, "127.0.0.1\tlocalhost\n")
    assert os.stat(etc / "resolv.conf").st_mtime_ns == before.st_mtime_ns
