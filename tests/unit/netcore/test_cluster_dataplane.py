"""The overlay data plane's diff (netcore.cluster.dataplane): FDB and permanent neighbour entries."""

import pytest

from netcore.cluster.dataplane import DataplanePlan, FdbEntry, NeighEntry, RemoteEndpoint, plan

A = RemoteEndpoint("10.0.0.2", "02:42:0a:00:00:02", "192.0.2.12")
B = RemoteEndpoint("10.0.0.3", "02:42:0a:00:00:03", "192.0.2.13")


def kernel_of(*endpoints):
    return ([FdbEntry(e.mac, e.vtep) for e in endpoints], [NeighEntry(e.ip, e.mac) for e in endpoints])


def test_an_empty_device_gets_an_fdb_and_a_neighbour_entry_per_remote_endpoint():
    diff = plan([A, B], [], [])
    assert diff.fdb_replace == (FdbEntry(A.mac, A.vtep), FdbEntry(B.mac, B.vtep))
    assert diff.neigh_replace == (NeighEntry(A.ip, A.mac), NeighEntry(B.ip, B.mac))
    assert diff.fdb_delete == diff.neigh_delete == ()


def test_a_device_that_matches_needs_nothing_and_applying_twice_is_a_no_op():
    assert plan([A, B], *kernel_of(A, B)).empty
    # spelled differently by the kernel (upper case, no leading zeros): still the same entries
    fdb = [FdbEntry("02:42:0A:0:0:2", "192.0.2.12"), FdbEntry(B.mac.upper(), B.vtep)]
    assert plan([A, B], fdb, kernel_of(A, B)[1]).empty


def test_a_gone_endpoint_loses_both_entries():
    diff = plan([A], *kernel_of(A, B))
    assert diff == DataplanePlan(fdb_delete=(FdbEntry(B.mac, B.vtep),), neigh_delete=(NeighEntry(B.ip, B.mac),))


def test_an_endpoint_whose_host_moved_gets_its_fdb_entry_moved():
    moved = RemoteEndpoint(A.ip, A.mac, "192.0.2.99")
    diff = plan([moved], *kernel_of(A))
    assert diff.fdb_delete == (FdbEntry(A.mac, A.vtep),)
    assert diff.fdb_replace == (FdbEntry(A.mac, "192.0.2.99"),)
    assert diff.neigh_replace == diff.neigh_delete == ()


def test_a_reused_address_with_a_new_mac_is_replaced_not_deleted():
    reused = RemoteEndpoint(A.ip, "02:42:0a:00:00:99", A.vtep)
    diff = plan([reused], *kernel_of(A))
    assert diff.neigh_replace == (NeighEntry(A.ip, reused.mac),)
    assert diff.neigh_delete == ()  # a neighbour is keyed by its IP: deleting it after the replace would lose it
    assert diff.fdb_delete == (FdbEntry(A.mac, A.vtep),)


def test_flooding_entries_and_extra_destinations_are_removed():
    fdb = [FdbEntry("00:00:00:00:00:00", "192.0.2.12"), FdbEntry(A.mac, A.vtep), FdbEntry(A.mac, "192.0.2.77")]
    diff = plan([A], fdb, [NeighEntry(A.ip, A.mac)])
    assert set(diff.fdb_delete) == {FdbEntry("00:00:00:00:00:00", "192.0.2.12"), FdbEntry(A.mac, "192.0.2.77")}
    assert diff.fdb_replace == ()


def test_two_endpoints_claiming_one_address_are_a_conflict_not_a_merge():
    twin = RemoteEndpoint(A.ip, "02:42:0a:00:00:aa", "192.0.2.13")
    diff = plan([A, twin], [], [])
    assert len(diff.neigh_replace) == 1 and len(diff.fdb_replace) == 1
    assert len(diff.conflicts) == 1 and A.ip in diff.conflicts[0]
    # the choice does not depend on the order given
    assert plan([twin, A], [], []) == diff


def test_duplicates_in_the_desired_list_count_once():
    assert plan([A, A, A], [], []).fdb_replace == (FdbEntry(A.mac, A.vtep),)


def test_malformed_addresses_are_refused():
    with pytest.raises(ValueError):
        plan([RemoteEndpoint("10.0.0.2", "zz:42:0a:00:00:02", "192.0.2.12")], [], [])
    with pytest.raises(ValueError):
        plan([RemoteEndpoint("10.0.0.300", A.mac, A.vtep)], [], [])
