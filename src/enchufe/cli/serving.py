"""What every command that serves clients shares: the ``enchufe`` listen modes and
``enchufe-relay``.

- :func:`make_room_for`: raise the open-file limit to what ``-m`` clients need;
- :func:`describe_peer`: how a peer is written in messages (ncat's words for a Unix client
  with no name; the balancer it came through);
- :func:`access_predicate`: ``--allow``/``--deny``/``--allowfile``/``--denyfile`` as a
  predicate on peers (:mod:`enchufe.acl`, ncat's syntax), names resolved once, now;
- :func:`wake_on_signals`: let a loop wake up for a signal whichever thread the kernel
  delivered it to;
- :func:`serve_in_worker`: run a server on a loop until a ``--workers`` worker is
  told to stop.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Protocol

    from enchufe.address import Address
    from enchufe.cli.signals import SignalHandlers
    from enchufe.net.loop import EventLoop
    from enchufe.serve.workers import Worker

    class _LoopServer(Protocol):
        def start(self) -> object: ...
        def close(self) -> None: ...


__all__ = ["access_predicate", "describe_peer", "make_room_for", "serve_in_worker", "wake_on_signals"]

#: Descriptors the command itself holds beside its clients' (stdio, listeners, the
#: loop's selector and wake-up pipe, the signal pipe, the input thread's stop pipe).
_DESCRIPTORS_OF_OUR_OWN = 32


def make_room_for(clients: int, per_client: int) -> None:
    """Raise the soft open-file limit (up to the hard one) when -m asks for more clients
    than it allows; a client costs ``per_client`` descriptors, and the process needs a
    few of its own."""
    import resource

    wanted = clients * per_client + _DESCRIPTORS_OF_OUR_OWN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))


def describe_peer(peer: Address | None, *, proxied_by: Address | None = None) -> str:
    """``peer`` in messages, with the balancer that relayed it (``--proxy-protocol``)."""
    # ncat's words for a Unix client that bound no name.
    text = str(peer or "a client on Unix domain socket")
    if proxied_by is not None:
        text += f" (through {proxied_by}, by the PROXY protocol)"
    return text


def access_predicate(
    specs: Sequence[tuple[str, str]],
    *,
    numeric_only: bool,
    on_detail: Callable[[str], None] | None = None,
) -> Callable[[Address | None], bool] | None:
    """``specs`` (``("allow", "10.0.0.0/8")``, ``("denyfile", PATH)``, in command-line
    order) as a predicate on peers; ``None`` when there are none. A Unix peer has no
    address to judge and is let in.

    Raises:
        AddressError: a specification that does not parse, or a file that does not open
            (``on_detail`` is told ncat's detail line first, when there is one).
    """
    if not specs:
        return None
    from enchufe.acl import AccessList
    from enchufe.address import InetAddress
    from enchufe.errors import AddressError

    acl = AccessList(resolve=None if numeric_only else _every_address_of)
    try:
        for kind, value in specs:
            if kind == "allow":
                acl.allow(value)
            elif kind == "deny":
                acl.deny(value)
            else:
                try:
                    with open(value) as file:
                        (acl.allow_file if kind == "allowfile" else acl.deny_file)(file, value)
                except OSError as exc:
                    raise AddressError(f"can't open {value}: {exc.strerror}") from None
    except AddressError as exc:
        if exc.__cause__ is not None and on_detail is not None:
            on_detail(str(exc.__cause__))  # ncat's detail line, before its QUITTING line
        raise

    def permits(peer: Address | None) -> bool:
        return not isinstance(peer, InetAddress) or acl.permits(peer.host)

    return permits


def _every_address_of(name: str) -> list[str]:
    import socket

    return [str(info[4][0]) for info in socket.getaddrinfo(name, None)]


def wake_on_signals(loop: EventLoop, signals: SignalHandlers) -> None:
    """Watch the signal wake-up pipe on ``loop``: the kernel may deliver a signal to
    any thread, and Python runs its handler (``on_signal``) only once the main thread,
    asleep in the loop's selector, wakes up."""
    wake_fd = signals.wake_fd
    if wake_fd is not None:
        import contextlib
        import os

        def drain() -> None:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_fd, 64)

        loop.add_reader(wake_fd, drain)


def serve_in_worker(loop: EventLoop, server: _LoopServer, worker: Worker) -> None:
    """Start ``server`` and run ``loop`` until ``worker`` is told to stop; then close
    ``server``."""
    worker.call_on_stop(loop.stop)  # thread-safe, and a stop before run_forever holds
    server.start()
    try:
        loop.run_forever()
    finally:
        server.close()
