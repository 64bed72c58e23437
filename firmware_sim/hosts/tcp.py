"""TCP host: the simulated register listens on loopback like a network register (Shtrih 7778/12345,
ATOL 5555). Port 0 picks a free port; :attr:`address` is the ``socket://`` URL the agent opens.

One client at a time, as on the real devices: a second connection is closed at once. Unplug
drops the connection and closes the listener, so connects are refused until ``replug`` listens
again on the same port.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time

from firmware_sim.endpoint import DeviceEndpoint
from firmware_sim.hosts import serve

log = logging.getLogger(__name__)
POLL_SECONDS = 0.05


class TcpHost:
    def __init__(self, endpoint: DeviceEndpoint, port: int = 0, host: str = "127.0.0.1") -> None:
        self.endpoint = endpoint
        self.host = host
        self._lock = threading.Lock()
        self._listener: socket.socket | None = self._listen(port)
        self.port: int = self._listener.getsockname()[1]
        self._client: socket.socket | None = None
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tcp-host :{self.port}", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"socket://{self.host}:{self.port}"

    @property
    def plugged(self) -> bool:
        return self._listener is not None

    def _listen(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            raise
        sock.listen(1)
        return sock

    def unplug(self) -> None:
        with self._lock:
            for sock in (self._client, self._listener):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
            self._client = self._listener = None

    def replug(self) -> None:
        with self._lock:
            if self._listener is None:
                self.endpoint.reset()
                self._listener = self._listen(self.port)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.unplug()

    def __enter__(self) -> TcpHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                listener, client = self._listener, self._client
            sockets = [s for s in (listener, client) if s is not None]
            if not sockets:
                time.sleep(POLL_SECONDS)
                continue
            try:
                readable, _, _ = select.select(sockets, [], [], POLL_SECONDS)
            except (OSError, ValueError):  # a socket was closed by unplug() meanwhile
                continue
            if not readable:
                unasked = self.endpoint.idle()
                if unasked and client is not None:
                    with contextlib.suppress(OSError):  # a dropped client is noticed by the next read
                        client.sendall(unasked)
            for sock in readable:
                if sock is listener:
                    self._accept(sock)
                elif sock is client:
                    self._serve(sock)

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, peer = listener.accept()
        except OSError:
            return
        with self._lock:
            if self._client is not None or self._listener is not listener:
                conn.close()  # busy (or unplugged meanwhile): one host at a time
                log.info("tcp :%d: refused a second connection from %s", self.port, peer)
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._client = conn
            self.connections += 1
        self.endpoint.reset()
        log.info("tcp :%d: host connected from %s", self.port, peer)

    def _drop_client(self, conn: socket.socket) -> None:
        with self._lock:
            if self._client is conn:
                self._client = None
        conn.close()

    def _serve(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(4096)
        except OSError:
            data = b""
        if not data:
            self._drop_client(conn)
            return

        def send(chunk: bytes) -> None:
            try:
                conn.sendall(chunk)
            except OSError:
                self._drop_client(conn)  # later chunks then fail the same way, harmlessly

        serve(self.endpoint, data, send, f"tcp :{self.port}")
