"""netcore.system.files, without root: the one home of write-by-rename (issue 25, item 5). A reader sees the old
file or the new one; the mode is the one asked whatever the umask; a symlink is replaced, never written
through; a failed write leaves the old file and no temporary; ``durable`` syncs the file and its directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from netcore.system import files
from netcore.system.files import replacing, temporary_path, write_atomically


def test_a_file_is_replaced_whole_with_its_mode_whatever_the_umask(tmp_path):
    path = str(tmp_path / "dnsd.options")
    old_umask = os.umask(0o077)
    try:
        write_atomically(path, "one\n")
        assert Path(path).read_text() == "one\n" and os.stat(path).st_mode & 0o777 == 0o644
        inode = os.stat(path).st_ino
        write_atomically(path, b"two\n", 0o600)
    finally:
        os.umask(old_umask)
    assert Path(path).read_text() == "two\n" and os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(path).st_ino != inode  # a new file, renamed over the old one
    assert os.listdir(tmp_path) == ["dnsd.options"]


def test_the_temporary_is_a_hidden_file_of_this_process_beside_the_target(tmp_path):
    assert temporary_path(str(tmp_path / "aardvark.pid")) == str(tmp_path / f".aardvark.pid.{os.getpid()}.tmp")


def test_a_symlink_is_replaced_not_written_through(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (tmp_path / "resolv.conf").symlink_to(victim)
    write_atomically(str(tmp_path / "resolv.conf"), "nameserver 10.0.0.1\n")
    assert victim.read_text() == "keep\n"
    assert not (tmp_path / "resolv.conf").is_symlink()
    assert (tmp_path / "resolv.conf").read_text() == "nameserver 10.0.0.1\n"


def test_a_symlink_planted_at_the_temporary_is_not_written_through(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    os.symlink(victim, temporary_path(str(tmp_path / "hosts")))
    write_atomically(str(tmp_path / "hosts"), "127.0.0.1 localhost\n")
    assert victim.read_text() == "keep\n"
    assert (tmp_path / "hosts").read_text() == "127.0.0.1 localhost\n"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = str(tmp_path / "netcore-dns")
    write_atomically(path, "old\n")
    with pytest.raises(RuntimeError), replacing(path) as temporary:
        with open(temporary, "w") as half:
            half.write("half")
        raise RuntimeError("the compiler failed")
    assert Path(path).read_text() == "old\n" and os.listdir(tmp_path) == ["netcore-dns"]


def test_a_leftover_temporary_of_this_pid_is_replaced(tmp_path):
    path = str(tmp_path / "dnsd.pid")
    with open(temporary_path(path), "w") as leftover:
        leftover.write("a killed writer's")
    write_atomically(path, "7\n")
    assert Path(path).read_text() == "7\n" and os.listdir(tmp_path) == ["dnsd.pid"]


def test_relative_to_a_directory_descriptor(tmp_path):
    directory = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        write_atomically("hosts", "127.0.0.1 localhost\n", dir_fd=directory)
        write_atomically("hosts", "127.0.0.1 localhost web\n", dir_fd=directory, durable=True)
    finally:
        os.close(directory)
    assert (tmp_path / "hosts").read_text() == "127.0.0.1 localhost web\n"


def test_durable_syncs_the_file_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(files.os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")),
                                                       real_fsync(fd)))
    path = str(tmp_path / "aardvark-dns")
    write_atomically(path, "#!/bin/sh\n", 0o755)
    assert synced == []
    write_atomically(path, "#!/bin/sh\n", 0o755, durable=True)
    assert synced == [temporary_path(path), str(tmp_path)]
    assert os.access(path, os.X_OK)
