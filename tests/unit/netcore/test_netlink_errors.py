"""What netcore says when the kernel refuses: a reason a user can act on, not an errno tuple."""

from __future__ import annotations

import errno

from pyroute2.netlink.exceptions import NetlinkError

from netcore.kernel.netlink import _kernel_error


def test_a_full_bridge_says_the_network_is_full():
    message = str(_kernel_error("cannot create veth vx1", NetlinkError(errno.EXFULL)))
    assert message.startswith("cannot create veth vx1: the network is full")
    assert "1023" in message and "Exchange full" not in message


def test_missing_privileges_say_what_is_needed():
    message = str(_kernel_error("cannot create bridge br1", NetlinkError(errno.EPERM)))
    assert "permission denied" in message and "CAP_NET_ADMIN" in message


def test_other_errors_keep_the_kernels_words():
    assert "File exists" in str(_kernel_error("cannot add address", NetlinkError(errno.EEXIST, "File exists")))
