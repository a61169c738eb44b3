"""100 echo round trips on one Connection with a deadline on every call, to count the
system calls under strace (the review counted 200 ioctl(FIONBIO) per 100 round trips
when each call set the socket's timeout):

    strace -f -c -e trace=ioctl,poll,recvfrom,sendto python3 benchmarks/deadline_syscalls.py
"""

from __future__ import annotations

import socket
import threading

from enchufe import Connection, SocketStream

ROUND_TRIPS = 100


def main() -> None:
    ours, theirs = socket.socketpair()

    def echo() -> None:
        while data := theirs.recv(100):
            theirs.sendall(data)

    peer = threading.Thread(target=echo)
    peer.start()
    with Connection(SocketStream(ours), timeout=5) as conn:
        for _ in range(ROUND_TRIPS):
            conn.send_all(b"ping")
            conn.recv_exactly(4)
        conn.send_eof()
        peer.join()
    theirs.close()


if __name__ == "__main__":
    main()
