"""The cluster's key layout and value encoding (netcore.cluster.keys): pure, no etcd."""

import json

import pytest

from netcore.cluster import keys
from netcore.cluster.keys import Claim, EndpointRecord, HostRecord, NetworkRecord, RecordError

NET = "ab" * 32
EP = "cd" * 32


def test_every_key_lives_under_the_versioned_prefix_and_parses_back():
    made = {
        keys.host_key("h1"): (keys.KIND_HOST, ("h1",)),
        keys.network_key(NET): (keys.KIND_NETWORK, (NET,)),
        keys.endpoint_key(NET, EP): (keys.KIND_ENDPOINT, (NET, EP)),
        keys.address_key(NET, "10.0.0.2"): (keys.KIND_ADDRESS, (NET, "10.0.0.2")),
        keys.vni_key(4096): (keys.KIND_VNI, ("4096",)),
        keys.subnet_key("10.0.3.0/24"): (keys.KIND_SUBNET, ("10.0.3.0/24",)),
        keys.global_name_key("web"): (keys.KIND_GLOBAL_NAME, ("web",)),
        keys.local_name_key("web", "h2"): (keys.KIND_LOCAL_NAME, ("web", "h2")),
    }
    for key, (kind, parts) in made.items():
        assert key.startswith("/netcore/v1/")
        assert keys.parse_key(key) == keys.KeyRef(kind, parts)
    assert keys.subnet_key("10.0.3.0/24") == "/netcore/v1/alloc/subnets/10.0.3.0-24"
    assert keys.endpoint_key(NET, EP).startswith(keys.endpoints_prefix(NET))
    assert keys.global_name_key("web").startswith(keys.name_prefix("web"))
    assert keys.local_name_key("web", "h2").startswith(keys.name_prefix("web"))
    # one name's prefix does not cover another name that starts the same way
    assert not keys.global_name_key("web2").startswith(keys.name_prefix("web"))


def test_addresses_are_canonical_in_keys():
    assert keys.address_key(NET, "10.0.0.02".replace("02", "2")) == keys.address_key(NET, "10.0.0.2")
    with pytest.raises(RecordError):
        keys.address_key(NET, "10.0.0.300")


@pytest.mark.parametrize("key", [
    "/netcore/v2/hosts/h1",              # another layout version
    "/netcore/v1/hosts/h1/extra",        # a deeper key this release does not know
    "/netcore/v1/networks/NOT-HEX",
    "/netcore/v1/hosts/a/b",
    "/netcore/v1/alloc/vnis/12x",
    "/netcore/v1/whatever",
])
def test_unknown_or_malformed_keys_are_refused(key):
    with pytest.raises(RecordError):
        keys.parse_key(key)


@pytest.mark.parametrize("bad", ["", "a/b", "-x", "x" * 64])
def test_names_that_would_break_the_layout_are_refused(bad):
    with pytest.raises(RecordError):
        keys.host_key(bad)
    with pytest.raises(RecordError):
        keys.global_name_key(bad)


RECORDS = [
    HostRecord("h1", "192.0.2.11", "0a1b", ("172.18.0.0/16",), 15, "2026-01-01T00:00:00Z"),
    NetworkRecord(NET, "web", "10.0.0.0/24", "10.0.0.1", 4096, True, {"com.docker.network.driver.mtu": "1400"},
                  {"team": "a"}, "2026-01-01T00:00:00Z", "h1"),
    EndpointRecord(EP, NET, "h1", "ef" * 32, "c1", "c1host", "10.0.0.2", "02:42:0a:00:00:02", ("db", "cache")),
    Claim(EP, "h1"),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_values_round_trip_and_are_deterministic(record):
    data = keys.encode(record)
    assert json.loads(data)["v"] == keys.FORMAT_VERSION
    assert keys.encode(record) == data  # the same record, the same bytes (transactions compare values)
    decoded = keys.decode(data, type(record))
    assert decoded.record == record
    assert decoded.unknown == ()


def test_a_newer_releases_fields_are_ignored_and_named():
    value = json.loads(keys.encode(RECORDS[0]))
    value.update(v=2, gpu_count=4, zone="b")
    decoded = keys.decode(json.dumps(value).encode(), HostRecord, "/netcore/v1/hosts/h1")
    assert decoded.record == RECORDS[0]
    assert decoded.unknown == ("gpu_count", "zone")
    assert decoded.version == 2


def test_optional_fields_take_their_defaults():
    decoded = keys.decode(b'{"v":1,"name":"h1","address":"192.0.2.1","host_id":"aa"}', HostRecord)
    assert decoded.record == HostRecord("h1", "192.0.2.1", "aa")


@pytest.mark.parametrize("data, message", [
    (b"not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"name":"h1","address":"a","host_id":"b"}', "no format version"),
    (b'{"v":true,"name":"h1","address":"a","host_id":"b"}', "no format version"),
    (b'{"v":1,"name":"h1","host_id":"b"}', "'address' is missing"),
    (b'{"v":1,"name":"h1","address":7,"host_id":"b"}', "'address': expected str"),
    (b'{"v":1,"name":"h1","address":"a","host_id":"b","lease_ttl":"15"}', "'lease_ttl': expected an integer"),
    (b'{"v":1,"name":"h1","address":"a","host_id":"b","lease_ttl":true}', "'lease_ttl': expected an integer"),
    (b'{"v":1,"name":"h1","address":"a","host_id":"b","local_subnets":[1]}', "expected a list of strings"),
])
def test_unreadable_values_raise_one_clear_error(data, message):
    with pytest.raises(RecordError, match=message) as caught:
        keys.decode(data, HostRecord, "/netcore/v1/hosts/h1")
    assert str(caught.value).startswith("/netcore/v1/hosts/h1")


def test_decode_key_picks_the_record_kind_from_the_key():
    ref, decoded = keys.decode_key(keys.endpoint_key(NET, EP), keys.encode(RECORDS[2]))
    assert ref.kind == keys.KIND_ENDPOINT
    assert decoded.record == RECORDS[2]
