"""enchufe.tools.resolve with an injected resolver: what each call answers, the order of
many lookups, and a lookup given up at its deadline while its thread finishes."""

from __future__ import annotations

import socket
import threading

import pytest

from enchufe.tools import resolve
from enchufe.tools.resolve import Answer, Entry

Info = tuple[int, int, int, str, tuple[str, int] | tuple[str, int, int, int]]


class FakeLookups:
    """A resolver that knows alpha.test (two addresses, a canonical name) and
    10.1.2.3's names, records what it was asked, and can hold a name's lookup until
    an event is set."""

    def __init__(self) -> None:
        self.asked: list[tuple[object, ...]] = []
        self.held: dict[str, threading.Event] = {}

    def getaddrinfo(self, host: str, port: str | None, family: int, type: int, proto: int, flags: int) -> list[Info]:
        self.asked.append(("getaddrinfo", host, port, family, type, flags))
        if host in self.held:
            self.held[host].wait(10)
        if host not in {"alpha.test", "beta.test", "slow.test"}:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        number = 80 if port == "http" else 0
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "alpha.test", ("fd00::1", number, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", number)),
            (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("10.1.2.3", number)),
        ]

    def gethostbyname_ex(self, name: str) -> tuple[str, list[str], list[str]]:
        self.asked.append(("gethostbyname_ex", name))
        return ("alpha.test", ["alpha", "a1.test"], ["10.1.2.3", "10.1.2.4"])

    def gethostbyaddr(self, address: str) -> tuple[str, list[str], list[str]]:
        self.asked.append(("gethostbyaddr", address))
        if address != "10.1.2.3":
            raise socket.herror(1, "Unknown host")
        return ("alpha.test", ["alpha"], [address])

    def gethostname(self) -> str:
        return "box.test"


def test_forward_keeps_every_address_in_the_resolvers_order_and_the_canonical_name() -> None:
    lookups = FakeLookups()
    answer = resolve.forward("alpha.test", family=0, type=0, service="http", lookups=lookups)
    assert answer.ok and answer.canonical == "alpha.test"
    assert answer.entries == [
        Entry("fd00::1", "inet6", "stream", 80),
        Entry("10.1.2.3", "inet", "stream", 80),
        Entry("10.1.2.3", "inet", "dgram", 80),
    ]
    assert lookups.asked == [("getaddrinfo", "alpha.test", "http", 0, 0, socket.AI_CANONNAME)]
    assert answer.elapsed_ns > 0


def test_numeric_only_asks_getaddrinfo_for_a_parse() -> None:
    lookups = FakeLookups()
    resolve.forward("alpha.test", family=socket.AF_INET, type=socket.SOCK_RAW, numeric_only=True, lookups=lookups)
    flags = socket.AI_CANONNAME | socket.AI_NUMERICHOST
    assert lookups.asked == [("getaddrinfo", "alpha.test", None, socket.AF_INET, socket.SOCK_RAW, flags)]


def test_a_refusal_is_an_answer_in_the_resolvers_words() -> None:
    answer = resolve.forward("nowhere.test", lookups=FakeLookups())
    assert (answer.status, answer.error, answer.entries) == ("failed", "Name or service not known", [])
    answer = resolve.reverse("10.9.9.9", lookups=FakeLookups())
    assert (answer.status, answer.error) == ("failed", "Unknown host")


def test_legacy_and_reverse_give_the_official_name_and_aliases() -> None:
    answer = resolve.legacy("alpha.test", lookups=FakeLookups())
    assert (answer.kind, answer.canonical, answer.aliases) == ("legacy", "alpha.test", ["alpha", "a1.test"])
    assert [entry.address for entry in answer.entries] == ["10.1.2.3", "10.1.2.4"]
    answer = resolve.reverse("10.1.2.3", lookups=FakeLookups())
    assert (answer.kind, answer.canonical, answer.aliases) == ("reverse", "alpha.test", ["alpha"])
    with pytest.raises(ValueError, match="not an address"):
        resolve.reverse("alpha.test", lookups=FakeLookups())


def test_names_too_reverses_each_distinct_address_after_the_forward_answer() -> None:
    lookups = FakeLookups()
    answers = resolve.lookup("alpha.test", names_too=True, lookups=lookups)
    assert [(answer.kind, answer.query, answer.status) for answer in answers] == [
        ("forward", "alpha.test", "ok"),
        ("reverse", "fd00::1", "failed"),
        ("reverse", "10.1.2.3", "ok"),
    ]
    assert [answer.query for answer in resolve.lookup("10.1.2.3", names_too=True, lookups=lookups)] == ["10.1.2.3"]


def test_is_address_is_inet_ptons_reading() -> None:
    assert all(map(resolve.is_address, ["10.1.2.3", "::1", "fe80::1%lo", "::ffff:10.1.2.3"]))
    assert not any(map(resolve.is_address, ["127.1", "alpha.test", "", "10.1.2.3.4", "fe80::1g"]))


def test_json_record_keys_are_all_there_always() -> None:
    keys = ["query", "kind", "status", "canonical", "aliases", "addresses", "error", "elapsed_ms"]
    assert list(resolve.forward("nowhere.test", lookups=FakeLookups()).record()) == keys
    assert list(Answer("x", "forward").record()) == keys
    assert list(Entry("::1", "inet6").record()) == ["address", "family", "type", "port"]


def test_many_lookups_answer_in_the_order_asked() -> None:
    """alpha.test is held until beta.test has been answered: the answers still come
    alpha first."""
    lookups = FakeLookups()
    lookups.held["alpha.test"] = threading.Event()

    def beta() -> list[Answer]:
        answers = [resolve.forward("beta.test", lookups=lookups)]
        lookups.held["alpha.test"].set()
        return answers

    jobs = [("alpha.test", "forward", lambda: [resolve.forward("alpha.test", lookups=lookups)])]
    jobs.append(("beta.test", "forward", beta))
    results = list(resolve.lookup_all(jobs, workers=2))
    assert [[answer.query for answer in answers] for answers in results] == [["alpha.test"], ["beta.test"]]


def test_a_lookup_past_its_deadline_is_given_up_and_its_thread_replaced() -> None:
    """With one thread, slow.test never answers within -w: it is reported as timed out
    and the next lookup still runs, on a new thread."""
    lookups = FakeLookups()
    release = lookups.held["slow.test"] = threading.Event()
    jobs = [
        ("slow.test", "forward", lambda: [resolve.forward("slow.test", lookups=lookups)]),
        ("alpha.test", "forward", lambda: [resolve.forward("alpha.test", lookups=lookups)]),
    ]
    try:
        results = list(resolve.lookup_all(jobs, workers=1, timeout=0.05))
    finally:
        release.set()  # the abandoned thread finishes its call and ends
    assert [answers[0].status for answers in results] == ["timeout", "ok"]
    slow = results[0][0]
    assert (slow.query, slow.kind, slow.error) == ("slow.test", "forward", "no answer within 0.05 s")
    assert slow.elapsed_ns == 50_000_000
