"""A container's /etc/netns files change in place: same inode, exact content, never half a file (issue 11, item 5)."""

from __future__ import annotations

import os
import stat

import pytest

from netcore.errors import NetcoreError
from netcore.kernel import sandbox


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


# -- issue 24, item 6: nothing is written through a symlinked directory or a hard-linked file --------------------


def test_a_symlinked_namespace_directory_is_refused_and_its_target_untouched(etc, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "resolv.conf").write_text("precious\n")
    etc.parent.mkdir()
    etc.symlink_to(elsewhere)
    with pytest.raises(NetcoreError, match=r"^refusing to write .*/netns/ns1: it is a symbolic link"):
        sandbox.write_etc("ns1", SHORT, "127.0.0.1\tlocalhost\n")
    assert sorted(os.listdir(elsewhere)) == ["resolv.conf"] and read(elsewhere / "resolv.conf") == "precious\n"


def test_a_symlinked_etc_netns_is_refused(etc, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    etc.parent.symlink_to(elsewhere)
    with pytest.raises(NetcoreError, match=r"^refusing to write .*/netns: it is a symbolic link"):
        sandbox.write_etc("ns1", SHORT, "127.0.0.1\tlocalhost\n")
    assert os.listdir(elsewhere) == []


def test_a_hard_linked_file_is_refused_and_the_other_name_keeps_its_content(etc, tmp_path):
    sandbox.write_etc("ns1", SHORT, "127.0.0.1\tlocalhost\n")
    precious = tmp_path / "shadow"
    precious.write_text("root:x:0:0\n")
    os.unlink(etc / "hosts")
    os.link(precious, etc / "hosts")  # someone planted a hard link to another file under our name
    with pytest.raises(NetcoreError, match=r"^refusing to write hosts: it has 2 hard links"):
        sandbox.write_etc("ns1", SHORT, "127.0.0.1\tlocalhost\n10.1.0.2\tweb\n")
    assert read(precious) == "root:x:0:0\n"


def test_a_leftover_temporary_file_that_is_a_hard_link_is_not_written_through(etc, tmp_path):
    etc.mkdir(parents=True)
    precious = tmp_path / "precious"
    precious.write_text("keep\n")
    os.link(precious, etc / f".resolv.conf.{os.getpid()}.tmp")  # the temporary netcore.system.files writes
    sandbox.write_etc("ns1", SHORT, "127.0.0.1\tlocalhost\n")
    assert read(precious) == "keep\n" and read(etc / "resolv.conf") == SHORT
