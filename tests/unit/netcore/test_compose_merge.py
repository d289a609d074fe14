"""Several -f files merged as Compose merges them, with each value's file and line kept."""

from __future__ import annotations

import pytest

from netcore.compose.document import Document, parse
from netcore.compose.errors import ComposeError
from netcore.compose.merge import merge

BASE = """services:
  web:
    command: a b
    entrypoint: [x]
    networks: [front, back]
    ports: ['80:80', '443:443']
    dns: 1.1.1.1
    labels: {a: '1'}
    extra_hosts: ['h:1.2.3.4']
    depends_on: [db]
networks:
  front:
    ipam:
      config: [{subnet: 10.0.0.0/24, gateway: 10.0.0.1}, {subnet: 10.1.0.0/24}]
"""
OVER = """services:
  web:
    command: [c]
    networks:
      back: {aliases: [x]}
    ports: ['80:80', '8080:8080']
    dns: [8.8.8.8]
    labels: [b=2]
    extra_hosts: ['h:1.2.3.4', 'i:5.6.7.8']
    depends_on:
      cache: {condition: service_started}
  db: {image: x}
networks:
  front:
    ipam:
      config: [{subnet: 10.0.0.0/24, ip_range: 10.0.0.128/25}]
"""


def merged(*texts: str) -> Document:
    result = Document({})
    for i, text in enumerate(texts):
        for document in parse(text, f"f{i}.yaml"):
            result = merge(result, document)
    return result


def test_compose_merge_rules():
    document = merged(BASE, OVER)
    web = document.data["services"]["web"]
    assert web["command"] == ["c"]  # replaced, not appended
    assert web["entrypoint"] == ["x"]
    assert web["networks"] == {"front": None, "back": {"aliases": ["x"]}}  # a list merged as a mapping
    assert web["ports"] == ["80:80", "443:443", "8080:8080"]  # appended, one per key
    assert web["dns"] == ["1.1.1.1", "8.8.8.8"]
    assert web["labels"] == ["a=1", "b=2"]
    assert web["extra_hosts"] == ["h:1.2.3.4", "i:5.6.7.8"]
    assert web["depends_on"] == {"db": {"condition": "service_started", "required": True},
                                 "cache": {"condition": "service_started"}}
    assert document.data["services"]["db"] == {"image": "x"}
    assert document.data["networks"]["front"]["ipam"]["config"] == [
        {"subnet": "10.0.0.0/24", "gateway": "10.0.0.1", "ip_range": "10.0.0.128/25"}]


def test_positions_follow_the_values():
    document = merged(BASE, OVER)
    assert str(document.location(("services", "web", "ports", 0))) == "f0.yaml:6"
    assert str(document.location(("services", "web", "ports", 2))) == "f1.yaml:6"
    assert str(document.location(("services", "web", "networks", "back", "aliases", 0))) == "f1.yaml:5"
    assert str(document.location(("services", "web", "networks", "front"))) == "f0.yaml:5"
    assert str(document.location(("services", "web", "command"))) == "f1.yaml:3"
    assert str(document.location(("services", "db"))) == "f1.yaml:12"


def test_reset_and_override():
    document = merged(BASE, "services:\n  web:\n    ports: !reset []\n    networks: !override [front]\n")
    web = document.data["services"]["web"]
    assert "ports" not in web
    assert web["networks"] == ["front"]


def test_null_keeps_and_a_single_file_is_made_unique():
    document = merged("services:\n  web:\n    hostname: a\n    ports: ['80:80', '80:80', 81]\n",
                      "services:\n  web:\n    hostname:\n")
    assert document.data["services"]["web"] == {"hostname": "a", "ports": ["80:80", 81]}


def test_shapes_that_clash_are_refused_with_the_line():
    with pytest.raises(ComposeError, match=r"f1\.yaml:3: services\.web\.ports: cannot override a list with a mapping"):
        merged(BASE, "services:\n  web:\n    ports: {a: 1}\n")
