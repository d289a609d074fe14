"""Whose embedded DNS dnsd stands in for: the rules where Docker's resolver and Podman's aardvark-dns differ.

Pure, and the one home of those differences: the builder reads the rules that
shape a snapshot (``prefer_asked_network``, ``qualified_names``,
``pointer_names``, ``rotate``, ``names_of``), the answerer the ones that decide
a query (``search_domain``, ``answer_upstream_failure``). netcore's own
networks answer as Docker's embedded DNS does (``DOCKER``); dnsd in
aardvark-dns's place (``dnsd.aardvark``) answers as aardvark-dns does
(``podman``), where a Podman user could rely on it. Where dnsd keeps a
difference from aardvark-dns 1.4 (Debian 12's), it follows a later
aardvark-dns release or fixes a reported bug; the list is in the docs
(docs/podman.md, "What differs from aardvark-dns 1.4").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dnsd.core.records import ServedContainer, ServedEndpoint
from dnsd.core.wire import encode_name
from netcore.model import dns_names

# what a reverse name (PTR) answers
NAME_DOT_NETWORK = "NAME.NETWORK"  # Docker: the container's name and its network (moby's Sandbox.ResolveIP)
EVERY_NAME = "every name"  # aardvark-dns: every name the container has on that network, bare


def podman_names(container: ServedContainer, endpoint: ServedEndpoint) -> tuple[str, ...]:
    """The names a container answers to in aardvark-dns's config: the names of its line, as netavark wrote them
    (the container's name, then its aliases; Podman lists the 12-hex short ID among them), nothing added."""
    return tuple(dict.fromkeys(name for name in (container.name, *endpoint.aliases) if name))


@dataclass(frozen=True)
class Dialect:
    """The rules one container engine's embedded DNS answers by (see the module docstring)."""

    name: str
    # a client on several networks asking through one network's gateway gets that network's addresses of a name
    # that network has (moby/moby#46162; Docker answers from one network too), else every network's together
    prefer_asked_network: bool
    qualified_names: bool  # NAME.NETWORK answers NAME as NETWORK alone has it (Docker)
    pointer_names: str  # NAME_DOT_NETWORK or EVERY_NAME
    rotate: bool  # several A or AAAA records of a name come in turns, one step per query
    names_of: Callable[[ServedContainer, ServedEndpoint], tuple[str, ...]]  # the names an endpoint's container has
    # the search domain containers carry in resolv.conf ("" for none): NAME.<domain> answers as NAME, and a name
    # under it that is not held is NXDOMAIN at once, never forwarded (aardvark-dns, every release)
    search_domain: str = ""
    answer_upstream_failure: bool = True  # SERVFAIL when no upstream answered in time; False: no reply at all

    @property
    def search_suffix(self) -> bytes | None:
        """The search domain in wire form, lower-cased (None without one)."""
        return encode_name(self.search_domain.strip(".").lower()) if self.search_domain.strip(".") else None


DOCKER = Dialect("docker", prefer_asked_network=True, qualified_names=True, pointer_names=NAME_DOT_NETWORK,
                 rotate=True, names_of=dns_names)


def podman(search_domain: str = ".dns.podman") -> Dialect:
    """aardvark-dns's rules, with netavark's ``--filter-search-domain`` (Podman's default ``.dns.podman``).

    As aardvark-dns 1.4 answers: a client on several networks gets a name's addresses on all of them
    together (``lookup`` in its ``src/backend/mod.rs``); a reverse name answers every name of the
    container bare (``NAME.``, ``ALIAS.``, ``SHORTID.``); no NAME.NETWORK; one order of records, no
    rotation (its order: the networks, then the lines of each file); no reply when no upstream
    answered (every release to 1.17 sends none). Names under the search domain: see ``Dialect``.
    """
    return Dialect("podman", prefer_asked_network=False, qualified_names=False, pointer_names=EVERY_NAME,
                   rotate=False, names_of=podman_names, search_domain=search_domain,
                   answer_upstream_failure=False)
