"""
flood_client.py - one process of a connection flood (cases_floods.py):

    python3 flood_client.py HOST PORT COUNT FIRST_PORT

Raises its soft RLIMIT_NOFILE to the hard one, starts COUNT non-blocking connects
to HOST:PORT at once from 127.0.0.1 ports FIRST_PORT, FIRST_PORT + 1, ... (bound
explicitly: the kernel's search for a free ephemeral port grows with the ports in
use, and made 20,000 connects take half a minute of system time), sends nothing,
then prints "started N" (N: the connects that did not fail at once). Each line it
then reads on stdin asks "established?": it answers "established N closed M"
(handshakes done; connections the server has closed since). It closes everything
and exits at EOF on stdin, or after 120 s. Standard library only; never sends a
byte.
"""

import errno
import resource
import select
import socket
import sys
import time

LIFETIME_S = 120


def main():
    host, port, count, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ep = select.epoll()
    socks = {}
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind(("127.0.0.1", first + i))
        rc = s.connect_ex((host, port))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            continue
        socks[s.fileno()] = s
        ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLRDHUP)
    print("started %d" % len(socks), flush=True)
    established, closed = set(), set()
    deadline = time.monotonic() + LIFETIME_S
    poll_in = select.poll()
    poll_in.register(sys.stdin.fileno(), select.POLLIN)
    while time.monotonic() < deadline:
        for fd, ev in ep.poll(0.05):
            if ev & (select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR):
                closed.add(fd)
                ep.unregister(fd)
            elif ev & select.EPOLLOUT:
                established.add(fd)
                ep.modify(fd, select.EPOLLRDHUP)
        if poll_in.poll(0):
            if not sys.stdin.readline():
                break
            print("established %d closed %d" % (len(established), len(closed)), flush=True)
    for s in socks.values():
        s.close()


if __name__ == "__main__":
    main()
