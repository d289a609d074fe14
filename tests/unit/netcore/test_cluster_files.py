"""The cluster's files in the state dir (cluster.json, cluster-names.json): 0600, and made without the umask.

The umask is one for all of a process's threads: netcored's engine thread and the cluster member's thread
both write files, and a save-set-restore of the umask in each left it at 0177 once they interleaved, so
that every later directory was made without its x bits (found as an unprivileged user, whom it stops)."""

from __future__ import annotations

import os
import stat

import pytest

from netcore.cluster import membership as membership_file
from netcore.cluster.membership import Membership
from netcore.dnsd_protocol import cluster_names


@pytest.fixture
def usual_umask():
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


@pytest.mark.parametrize("leftover", [False, True], ids=["fresh", "over-a-leftover-temporary-file"])
def test_both_files_are_the_owners_alone_and_the_umask_is_never_touched(tmp_path, usual_umask, leftover, monkeypatch):
    state_dir = str(tmp_path)
    if leftover:  # a temporary file of an earlier, interrupted write, readable by all
        for name in (membership_file.path(state_dir), cluster_names.path(state_dir)):
            with open(f"{name}.tmp", "w") as f:
                f.write("half")
            os.chmod(f"{name}.tmp", 0o644)
    calls = []
    real_umask = os.umask
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or real_umask(mask))
    membership_file.write(state_dir, Membership("etcd://127.0.0.1:2379", "host1", "192.0.2.1", "ab" * 16))
    cluster_names.write(state_dir, 7, [])
    monkeypatch.undo()
    assert calls == []
    assert _umask() == 0o022
    assert _mode(membership_file.path(state_dir)) == 0o600
    assert _mode(cluster_names.path(state_dir)) == 0o600
    assert membership_file.read(state_dir).name == "host1"
    assert cluster_names.read(state_dir) == (7, [])
