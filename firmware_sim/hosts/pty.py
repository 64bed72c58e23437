"""Pty host: the simulated register appears as a serial device path (``/dev/pts/N``).

The slave side is put in raw mode and kept open by the host, so the client may open and close
it any number of times without the master seeing EIO. One thread pumps master → endpoint →
master.

Unplug cannot make the path vanish, so the honest emulation is a dead cable: while unplugged the
host reads and drops everything and answers nothing (the driver times out); ``replug`` resets the
endpoint's partial input and resumes answering.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
import tty

from firmware_sim.endpoint import DeviceEndpoint
from firmware_sim.hosts import Pluggable, serve

log = logging.getLogger(__name__)
POLL_SECONDS = 0.05  # how quickly close() is noticed; data wakes the thread at once


class PtyHost(Pluggable):
    def __init__(self, endpoint: DeviceEndpoint) -> None:
        self.endpoint = endpoint
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.slave_path = os.ttyname(self._slave)
        self.plugged = True
        self.bytes_in = 0
        self.bytes_out = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pty-host {self.slave_path}", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return self.slave_path

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> PtyHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                readable, _, _ = select.select([self._master], [], [], POLL_SECONDS)
                if not readable:
                    unasked = self.endpoint.idle()
                    if unasked and self.plugged:
                        self._write_all(unasked)
                    continue
                data = os.read(self._master, 4096)
            except OSError as exc:
                if self._stop.is_set():
                    return
                log.warning("pty %s: read failed: %s", self.slave_path, exc)
                time.sleep(POLL_SECONDS)
                continue
            self.bytes_in += len(data)
            if not self.plugged:
                continue
            serve(self.endpoint, data, self._write_all, f"pty {self.slave_path}")

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._master, view)
            except OSError as exc:
                log.warning("pty %s: write failed: %s", self.slave_path, exc)
                return
            self.bytes_out += written
            view = view[written:]
