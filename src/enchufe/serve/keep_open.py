"""ncat's ``-l -k``: many clients at once; the host's input goes to all, all of them to its output.

:class:`KeepOpen` joins three parts, each doing the job it fits:

- **the loop** (an :class:`~enchufe.net.loop.EventLoop` thread, the caller's) accepts
  in bursts (:class:`~enchufe.net.acceptor.Acceptor`), admits or refuses each client
  (the limit, access control), and runs the :class:`~enchufe.serve.hub.Hub`: no client
  costs a thread, and a lagging client is dropped, never waited for;
- **an input thread** (``keep-open-input``) reads the host's input, which is a
  blocking descriptor shared with other processes (a terminal, a shell's pipe). It
  reads only while some client can take more (an Event the loop sets and clears),
  so a file on stdin is not read into memory faster than the clients drain it, and
  not at all while nobody is connected (ncat reads stdin once a client is there);
- **an output thread** (``keep-open-output``) writes what clients send to the host's
  output through a bounded Queue: while it is full, the loop stops reading from the
  clients and accepting new ones (they wait in the kernel's queue), and TCP slows
  them down; nothing is dropped. An output that refuses data
  (a full disk) ends the server (:attr:`KeepOpen.output_error`), and so does an output
  whose reader went away (``enchufe -l -k | head``), as they end ncat's.

UDP peers are clients too (``-u -l -k``): each datagram listener's socket is shared by
all its peers, which :class:`~enchufe.net.datagram.DatagramSessions` tells apart by
address and expires when ``idle_timeout`` passes without traffic (ncat never does);
the same limit and access control admit them. Every read of the host's input is one
datagram of at most 8 KiB to each peer, as in connect mode.

End of stream, as ncat does it in this mode (``enchufe.proto.eof`` for the single
session): a client that half-closes is closed once what was queued for it is sent;
the end of the host's input half-closes every client (and every later one at once),
and the server keeps running, unless ``quit_after_input`` says when to end (ncat's
``-q``). The output is never closed: other clients may come.

The per-connection options of the single session apply here too, each where ncat
applies it: ``outbound`` filters the host's input before it goes out (``-C``, then the
``-o``/``-x`` logs), ``inbound`` sees what every client sends as it arrives (the logs);
each client has its own Telnet responder (``-t``), its own read delay (``-d``: its
reading is paused and resumed by a timer, the loop never sleeps) and its own idle
timeout (``-i``, kept by the hub).

With a server ``tls`` context (ncat's ``--ssl``) every stream client speaks TLS, its
handshake on the loop (:class:`~enchufe.serve.hub.Hub`). As in ncat, a client is
announced (``on_join``) and holds a place under ``max_clients`` from the moment it is
accepted, and becomes a member once its handshake is done: only then does it get the
host's input, join a room, or wait for the end of the input. A failed handshake is
``on_tls_failed(peer, error)``, and the others are served on; one not done within
``handshake_timeout`` (10 s by default; ncat waits for ever) fails too.

Behind a load balancer (``proxy_protocol``, a
:class:`~enchufe.serve.policy.ProxyProtocol`), a trusted balancer's connection is
watched on the loop until its PROXY header is read
(:class:`~enchufe.net.proxy_protocol.ProxyHeaderReader`, ``handshake_timeout`` for it,
before TLS), holding a place under ``max_clients`` meanwhile; the client it names is
then judged by ``access``, announced and served as that peer. A bad, cut-short or late
header, or an untrusted peer: ``on_refused``, and the others are served on.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import threading

from enchufe.errors import OutputFailed
from enchufe.net.acceptor import Acceptor
from enchufe.net.datagram import DatagramSessions
from enchufe.net.stream import DATAGRAM_PAYLOAD_SIZE, DEFAULT_RECV_SIZE
from enchufe.proto.chat import NCAT_READ_SIZE
from enchufe.proto.lines import LineBuffer
from enchufe.serve.hub import DEFAULT_MAX_BACKLOG, Client, Hub
from enchufe.serve.policy import DEFAULT_HANDSHAKE_TIMEOUT, UNTRUSTED, client_behind, header_refusal

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    import ssl
    from collections.abc import Callable, Sequence

    from enchufe.address import Address
    from enchufe.errors import NetworkError
    from enchufe.net.datagram import DatagramSession
    from enchufe.net.listen import Listener
    from enchufe.net.loop import EventLoop, TimerHandle
    from enchufe.net.proxy_protocol import ProxyHeaderReader
    from enchufe.proto.chat import Room
    from enchufe.proto.proxy_protocol import ProxyHeader
    from enchufe.serve.policy import ProxyProtocol, TlsFailureHook

__all__ = ["KeepOpen"]

#: One read of the host's input; in a room, ncat's size (chat prefixes each read).
_READ_SIZE = 65536
#: The host's number in a room: ncat's <user0>, its standard input.
_HOST = 0
#: Chunks waiting for the host's output before clients stop being read; reading
#: resumes once the writer is down to a quarter of it.
_OUTPUT_QUEUE = 32
#: With labels, the most bytes of one client's line held back before it goes out.
_MAX_LABELLED_LINE = 65536
#: Seconds the end of ``quit_after_input`` waits for clients to take what is queued.
_QUIT_FLUSH = 1.0


class KeepOpen:
    """Serve clients of ``listeners`` on ``loop`` with ncat's ``-k`` rules.

    Args:
        loop: the event loop, run by the caller (:meth:`start` first).
        listeners: stream or datagram listeners; the caller keeps owning them.
        input_fd: the host's input (stdin); read in a thread, never closed.
        output_fd: the host's output (stdout); written in a thread, never closed.
        max_clients: connected clients at once; more are refused (ncat's ``-m``).
        access: ``access(peer)`` is False for a peer to refuse (``--allow``/``--deny``).
        half_close: at the end of the input, half-close every client
            (``False``: ncat's ``--no-shutdown``).
        on_join, on_leave, on_refused, on_drop: what happens, for the caller to
            report: ``on_join(peer, proxied_by)`` (a client accepted, before its TLS
            handshake; ``proxied_by``: the balancer it came through, or ``None``),
            ``on_leave(peer, error)``, ``on_refused(peer, reason)``,
            ``on_drop(peer, reason)``.
        max_backlog: bytes a client may fall behind before it is dropped.
        room: ``--broker``/``--chat``: what clients and the input send goes to the
            other clients as the :class:`~enchufe.proto.chat.Room` says (members are
            numbered by their descriptors, the input is ``<user0>``), and nothing
            reaches the output, unless the room's observer is ``0``: then the output
            receives what a member would.
        send: read the host's input at all (``False``: ncat's ``--recv-only``).
        receive: pass on what clients send (``False``: ncat's ``--send-only``; it is
            still read, to see each client's end).
        outbound: applied to each chunk of the host's input before it goes out.
        inbound: applied to each chunk a client sends, as it arrives.
        new_responder: called once per client; the function it returns takes what
            that client sends and returns what to answer it (``-t``).
        delay: seconds before the next read from the same source (``-d``).
        idle_timeout: a client with no bytes moved for this long is cut off, a UDP
            peer forgotten (``on_idle`` reports it); ``None``: never.
        quit_after_input: seconds after the end of the input at which the server
            ends (``None``: never); what is queued for the clients is sent first,
            for at most a second.
        accept_timeout: seconds within which the first client must come, or the
            server ends with :attr:`ended` ``"accept timeout"``.
        label: ``label(peer, number)`` gives the bytes put before each line a client
            sends, on the output; a client's unfinished line waits for the rest (up
            to 64 KiB), so lines of different clients never mix.
        tls: a server context: stream clients speak TLS (not for datagram listeners).
        handshake_timeout: seconds a TLS client has for its handshake (``None``: for
            ever).
        on_tls_failed: ``on_tls_failed(peer, error)`` when a TLS client's handshake
            fails or times out; the client is then gone.
        proxy_protocol: the trusted balancers whose connections start with a PROXY
            header (stream listeners only; see the module docstring).

    Attributes:
        ended: why the server ended by itself (``"quit"``, ``"accept timeout"``,
            ``"output failed"``, ``"output closed"``: the output's reader went away),
            or ``None`` while it runs and when only :meth:`close` ends it.
        output_error: the :class:`~enchufe.errors.OutputFailed` that ended it, when
            writing to the output failed (a full disk).
    """

    def __init__(
        self,
        loop: EventLoop,
        listeners: Sequence[Listener],
        *,
        input_fd: int,
        output_fd: int,
        max_clients: int = 100,
        access: Callable[[Address | None], bool] | None = None,
        half_close: bool = True,
        on_join: Callable[[Address | None, Address | None], None] | None = None,
        on_leave: Callable[[Address | None, NetworkError | None], None] | None = None,
        on_refused: Callable[[Address | None, str], None] | None = None,
        on_drop: Callable[[Address | None, str], None] | None = None,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        room: Room | None = None,
        send: bool = True,
        receive: bool = True,
        outbound: Callable[[bytes], bytes] | None = None,
        inbound: Callable[[bytes], bytes] | None = None,
        new_responder: Callable[[], Callable[[bytes], bytes]] | None = None,
        delay: float | None = None,
        idle_timeout: float | None = None,
        on_idle: Callable[[Address | None], None] | None = None,
        quit_after_input: float | None = None,
        accept_timeout: float | None = None,
        label: Callable[[Address | None, int], bytes] | None = None,
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        on_tls_failed: TlsFailureHook | None = None,
        proxy_protocol: ProxyProtocol | None = None,
    ) -> None:
        self.loop = loop
        self.room = room
        self.ended: str | None = None
        self.output_error: OutputFailed | None = None
        self._send = send
        self._receive = receive
        self._outbound = outbound
        self._inbound = inbound
        self._new_responder = new_responder
        self._responders: dict[int, Callable[[bytes], bytes]] = {}
        self._delay = delay
        self._delayed: set[int] = set()
        self._quit_after_input = quit_after_input
        self._accept_timeout = accept_timeout
        self._accept_timer: TimerHandle | None = None
        self._label = label
        self._lines = LineBuffer(_MAX_LABELLED_LINE) if label is not None else None
        self._members: dict[int, Client] = {}
        datagram_listeners = [listener for listener in listeners if listener.is_datagram]
        if tls is not None and datagram_listeners:
            raise ValueError("TLS is for stream listeners: datagrams need DTLS")
        if datagram_listeners:
            self._read_size = DATAGRAM_PAYLOAD_SIZE
        else:
            self._read_size = _READ_SIZE if room is None else NCAT_READ_SIZE
        self.max_clients = max_clients
        self.access = access
        self.half_close = half_close
        self.on_join = on_join
        self.on_leave = on_leave
        self.on_refused = on_refused
        self.proxy_protocol = proxy_protocol
        self._handshake_timeout = handshake_timeout
        #: Balancers' connections whose PROXY header is on its way: each holds a place.
        self._introducing: set[ProxyHeaderReader] = set()
        self._input_fd = input_fd
        self._output_fd = output_fd
        self.hub = Hub(
            loop,
            on_data=self._from_client,
            on_ready=self._welcome,
            on_leave=self._left,
            on_drop=(lambda client, reason: on_drop(client.peer, reason)) if on_drop else None,
            on_room=self._update_room,
            max_backlog=max_backlog,
            read_size=DEFAULT_RECV_SIZE if room is None else NCAT_READ_SIZE,
            idle_timeout=idle_timeout,
            on_idle=(lambda client: on_idle(client.peer)) if on_idle else None,
            tls=tls,
            handshake_timeout=handshake_timeout,
            on_tls_failed=((lambda client, error: on_tls_failed(client.peer, error)) if on_tls_failed else None),
        )
        self.acceptor = Acceptor(
            loop,
            [listener for listener in listeners if not listener.is_datagram],
            on_accept=self._join,
            admit=self._admit,
            on_refused=self._refused,
        )
        self._idle_timeout = idle_timeout
        self._datagram_listeners = datagram_listeners
        self._peers: list[DatagramSessions] = []
        self._sessions: dict[DatagramSession, Client] = {}
        # A UDP peer's number in a room: above every listening socket's descriptor, so
        # none is a number a stream client's descriptor could have at the same time.
        self._next_peer_number = max((listener.fileno() for listener in listeners), default=0) + 1
        self._input_ended = False
        self._room = threading.Event()
        self._stop_read, self._stop_write = os.pipe()
        # Unbounded as a Queue: clients stop being read once _OUTPUT_QUEUE chunks wait,
        # and a room's announcements to the output stop with the acceptor.
        self._output: queue.Queue[bytes | None] = queue.Queue()
        self._clients_paused = False
        self._output_thread = threading.Thread(target=self._write_output, name="keep-open-output", daemon=True)
        self._threads = [self._output_thread]
        if send:
            self._threads.append(threading.Thread(target=self._read_input, name="keep-open-input", daemon=True))

    def start(self) -> None:
        """Start accepting and the threads. From the loop's thread, or before it runs."""
        self.acceptor.start()
        if self._accept_timeout is not None:
            self._accept_timer = self.loop.call_later(self._accept_timeout, self._end, "accept timeout")
        for listener in self._datagram_listeners:
            self._peers.append(
                DatagramSessions(
                    self.loop,
                    listener.sock,
                    on_open=self._peer_joined,
                    on_datagram=self._peer_sent,
                    on_close=self._peer_left,
                    admit=self._admit,
                    on_refused=self._refused,
                    idle_timeout=self._idle_timeout,
                )
            )
        for thread in self._threads:
            thread.start()

    def close(self, *, grace: float = 1.0) -> bool:
        """Stop accepting, cut every client off, stop the threads.

        What clients sent is still written out: the output thread gets ``grace``
        seconds to finish (a reader of the output that stopped reading would hold
        it for ever). Call it once the loop has stopped. Returns True if every
        thread ended in time.
        """
        self.acceptor.stop()
        for reader in self._introducing:
            reader.cancel()
            reader.sock.close()
        self._introducing.clear()
        self.hub.abort()
        for peers in self._peers:
            peers.close()
        # One more turn of the loop: each aborted transport closes its socket once its
        # client has heard of it.
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()
        os.write(self._stop_write, b"x")
        self._room.set()
        with contextlib.suppress(queue.Full):
            self._output.put(None, timeout=grace)
        ended = True
        for thread in self._threads:
            thread.join(grace)
            ended = ended and not thread.is_alive()
        if not any(thread.is_alive() and thread is not self._output_thread for thread in self._threads):
            os.close(self._stop_read)
            os.close(self._stop_write)
        return ended

    # -- the loop's side ---------------------------------------------------------------

    def _admit(self, peer: Address | None) -> str | None:
        policy = self.proxy_protocol
        balancer = policy is not None and policy.trusted(peer)
        if policy is not None and not balancer and not policy.optional:
            return UNTRUSTED
        # A balancer's client is judged once its header names it (_introduced).
        if not balancer and self.access is not None and not self.access(peer):
            return "not allowed"
        if len(self.hub) + len(self._introducing) >= self.max_clients:
            return f"connection limit reached ({self.max_clients})"
        return None

    def _refused(self, peer: Address | None, reason: str) -> None:
        if self.on_refused is not None:
            self.on_refused(peer, reason)

    def _join(self, sock: socket.socket, peer: Address | None) -> None:
        if self.proxy_protocol is not None and self.proxy_protocol.trusted(peer):
            from enchufe.net.proxy_protocol import ProxyHeaderReader

            reader = ProxyHeaderReader(
                self.loop,
                sock,
                timeout=self._handshake_timeout,
                on_header=lambda header: self._introduced(reader, peer, header),
                on_failed=lambda error: self._not_introduced(reader, peer, error),
            )
            self._introducing.add(reader)
            reader.start()
            return
        self._accepted(peer, None)
        self.hub.add(sock, peer)

    def _introduced(self, reader: ProxyHeaderReader, balancer: Address | None, header: ProxyHeader) -> None:
        self._introducing.discard(reader)
        peer, proxied_by = client_behind(balancer, header)
        if self.access is not None and not self.access(peer):
            reader.sock.close()
            self._refused(peer, "not allowed")
            return
        self._accepted(peer, proxied_by)
        self.hub.add(reader.sock, peer)

    def _not_introduced(self, reader: ProxyHeaderReader, balancer: Address | None, error: Exception) -> None:
        self._introducing.discard(reader)
        reader.sock.close()
        self._refused(balancer, header_refusal(error))

    def _peer_joined(self, session: DatagramSession) -> None:
        self._accepted(session.peer, None)
        client = self.hub.attach(session, session.peer, self._next_peer_number)
        self._next_peer_number += 1
        self._sessions[session] = client

    def _peer_sent(self, session: DatagramSession, data: bytes) -> None:
        if data:  # an empty datagram is traffic (it keeps the session), not data
            self._sessions[session].data_received(data)

    def _peer_left(self, session: DatagramSession, reason: str) -> None:
        client = self._sessions.pop(session)
        if reason == "idle" and self.hub.on_idle is not None:
            self.hub.on_idle(client)
        client.connection_lost(None)

    def _accepted(self, peer: Address | None, proxied_by: Address | None) -> None:
        if self._accept_timer is not None:
            self._accept_timer.cancel()
            self._accept_timer = None
        if self.on_join is not None:
            self.on_join(peer, proxied_by)

    def _welcome(self, client: Client) -> None:
        """A client is ready (its TLS handshake done): it becomes a member."""
        if self._new_responder is not None:
            self._responders[client.id] = self._new_responder()
        if self.room is not None:
            self._members[client.number] = client
            self._deliver(self.room.join(client.number, str(client.peer or "localhost")))
        assert client.transport is not None
        if self._clients_paused:
            client.transport.pause_reading()
        if self._input_ended and self.half_close:
            client.transport.write_eof()

    def _left(self, client: Client, error: NetworkError | None) -> None:
        self._responders.pop(client.id, None)
        self._delayed.discard(client.id)
        if self._lines is not None and self._label is not None and (rest := self._lines.flush(client)):
            self._to_output(self._label(client.peer, client.id) + rest)
        if self.room is not None and self._members.pop(client.number, None) is client:
            self._deliver(self.room.leave(client.number))
        if self.on_leave is not None:
            self.on_leave(client.peer, error)
        if self.ended == "quit" and not len(self.hub):
            self.loop.stop()

    def _deliver(self, deliveries: list[tuple[int, bytes]]) -> None:
        assert self.room is not None
        for member, data in deliveries:
            if member == self.room.observer:
                self._to_output(data)
                continue
            client = self._members.get(member)
            if client is not None:
                client.send(data)

    def _from_client(self, client: Client, data: bytes) -> None:
        if self._delay is not None and client.transport is not None:
            client.transport.pause_reading()  # the next read after the delay
            self._delayed.add(client.id)
            self.loop.call_later(self._delay, self._end_delay, client)
        if not self._receive:
            return  # --send-only: read only to see the client's end
        if self._inbound is not None:
            data = self._inbound(data)
        responder = self._responders.get(client.id)
        if responder is not None and (answer := responder(data)):
            client.send(answer)
        if self.room is not None:
            self._deliver(self.room.message(client.number, data))
        elif self._lines is not None and self._label is not None:
            label = self._label(client.peer, client.id)
            if lines := self._lines.lines(client, data):
                self._to_output(b"".join([label + line for line in lines]))
        else:
            self._to_output(data)

    def _end_delay(self, client: Client) -> None:
        self._delayed.discard(client.id)
        transport = client.transport
        if not self._clients_paused and transport is not None and not transport.is_closing():
            transport.resume_reading()

    def _to_output(self, data: bytes) -> None:
        self._output.put_nowait(data)
        if not self._clients_paused and self._output.qsize() >= _OUTPUT_QUEUE:
            self._clients_paused = True
            # No newcomer either: it would only take a place (-m) and wait, paused.
            # Clients that leave meanwhile are seen to once reading resumes.
            self.acceptor.stop()
            for each in self.hub:
                if each.transport is not None:
                    each.transport.pause_reading()

    def _resume_clients(self) -> None:
        if not self._clients_paused:
            return
        self._clients_paused = False
        if self.ended is None:
            self.acceptor.start()
        for client in self.hub:
            transport = client.transport
            if transport is not None and not transport.is_closing() and client.id not in self._delayed:
                transport.resume_reading()

    def _broadcast(self, data: bytes) -> None:
        if self._outbound is not None:
            data = self._outbound(data)
        if self.room is None:
            self.hub.broadcast(data)
        else:
            self._deliver(self.room.message(_HOST, data))
        self._update_room()

    def _update_room(self) -> None:
        if self.hub.ready() and self.hub.has_room():
            self._room.set()
        else:
            self._room.clear()

    def _end_of_input(self) -> None:
        self._input_ended = True
        if self.room is not None:
            self._deliver(self.room.flush(_HOST))
        if self.half_close:
            for client in self.hub:
                if client.transport is not None and not client.transport.is_closing():
                    client.transport.write_eof()
        if self._quit_after_input is not None:
            self.loop.call_later(self._quit_after_input, self._quit)

    def _quit(self) -> None:
        """``-q``'s end: no more clients or reads; each client gets what is queued for
        it (for at most a second), then the loop stops."""
        self.ended = "quit"
        self.acceptor.stop()
        for peers in self._peers:
            peers.close()  # a UDP peer has nothing waiting: its session ends now
        if not len(self.hub):
            self.loop.stop()
            return
        self.hub.close()
        self.loop.call_later(_QUIT_FLUSH, self.loop.stop)

    def _end(self, reason: str) -> None:
        self.ended = reason
        self.loop.stop()

    def _output_failed(self, error: OutputFailed) -> None:
        self.output_error = error
        self._end("output failed")

    # -- the threads' side ---------------------------------------------------------------

    def _read_input(self) -> None:
        poller = select.poll()
        poller.register(self._input_fd, select.POLLIN)
        poller.register(self._stop_read, select.POLLIN)
        stop_only = select.poll()  # the wait of -d: only a stop ends it early
        stop_only.register(self._stop_read, select.POLLIN)
        while True:
            self._room.wait()
            if any(fd == self._stop_read for fd, _ in poller.poll()):
                return
            try:
                data = os.read(self._input_fd, self._read_size)
            except OSError:
                data = b""  # an input that fails has ended, as far as the clients can tell
            if not data:
                self.loop.call_soon_threadsafe(self._end_of_input)
                return
            self._room.clear()  # the loop sets it again once the chunk is out and there is room
            self.loop.call_soon_threadsafe(self._broadcast, data)
            if self._delay is not None and stop_only.poll(self._delay * 1000):
                return

    def _write_output(self) -> None:
        low = _OUTPUT_QUEUE // 4
        while (data := self._output.get()) is not None:
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self._output_fd, view) :]
            except BrokenPipeError:  # the reader went away: what clients send has nowhere to go
                self.loop.call_soon_threadsafe(self._end, "output closed")
                return
            except OSError as exc:  # a full disk: the server ends, as a single session does
                self.loop.call_soon_threadsafe(
                    self._output_failed, OutputFailed(exc.strerror or str(exc), errno=exc.errno)
                )
                return
            if self._clients_paused and self._output.qsize() <= low:
                self.loop.call_soon_threadsafe(self._resume_clients)
