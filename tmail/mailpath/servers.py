"""The daemon's two small UNIX-socket servers besides the milter.

- deliver: tmail-deliver hands over one message (tmail.mailpath.wire);
- guard: a Postfix policy service consulted only for tmail's domains. It
  answers DUNNO at once; its point is to be unreachable when the daemon is
  down, so that Postfix's default_action defers tmail's recipients while the
  milter's default_action=accept keeps all other mail flowing.
"""
from __future__ import annotations

import json
import logging
import os
import select
import socket
import socketserver
import time

from .draining import DRAIN
from .wire import MAGIC, MAX_HEADER_LINE, read_chunks

log = logging.getLogger("tmail.server")

BACKLOG = 256
DEFAULT_PATIENCE = 600     # seconds tmail-deliver waits, unless it says
MARGIN = 15                # abandon this long before the client would give up


def unix_listener(path: str, mode: int) -> socket.socket:
    """A listening UNIX socket at `path` with permissions `mode`."""
    if os.path.exists(path):
        os.unlink(path)  # a stale socket from a killed daemon
    os.makedirs(os.path.dirname(path), exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o777 & ~mode)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, mode)
    # socketserver's default backlog is 5: a burst of smtpd processes (or of
    # pipe deliveries) would find the socket refusing them, and the guard's
    # default_action would defer good mail.
    listener.listen(BACKLOG)
    return listener


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, where: str | socket.socket, handler, mode: int = 0o600):
        """where: a path to listen at, or a listening socket (an LMTP
        worker's, which its siblings accept on too: made non-blocking, so
        that one that lost the race for a connection goes back to waiting)."""
        if isinstance(where, socket.socket):
            listener = where
            listener.setblocking(False)
        else:
            listener = unix_listener(where, mode)
        super().__init__(listener.getsockname(), handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener


def deliver_server(path: str, delivery, mode: int = 0o600) -> _UnixServer:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            try:
                self._handle()
            except OSError as exc:   # the client went away: nothing to answer
                log.info("delivery client went away: %s", exc)

        def _handle(self):
            started = time.monotonic()
            line = self.rfile.readline(MAX_HEADER_LINE)
            if not line:
                return    # connected and hung up (a probe, `tmail postfix check`)
            try:
                if not line.startswith(MAGIC) or not line.endswith(b"\n"):
                    raise ValueError("no TMAIL1 header line")
                request = json.loads(line[len(MAGIC):].decode("utf-8", "surrogateescape"))
                if not isinstance(request, dict):
                    raise ValueError("the header is not an object")
                patience = float(request.get("timeout", DEFAULT_PATIENCE))
            except ValueError as exc:
                log.warning("delivery protocol error: %s", exc)
                self.wfile.write(b"75 4.3.0 protocol error\n")
                return

            def still_wanted() -> bool:
                # The pipe gives up (and Postfix retries) at its own alarm:
                # past that, or once it has hung up, a message sent would be
                # a duplicate of the retry.
                return (time.monotonic() - started < patience - MARGIN
                        and not _hung_up(self.connection))

            with DRAIN.delivery():
                if DRAIN.stopping.is_set():
                    self.wfile.write(b"75 4.3.2 tmail is stopping; will retry\n")
                    return
                outcome = delivery.deliver(request, read_chunks(self.rfile), still_wanted)
                text = " ".join(outcome.text.split())[:400]
                self.wfile.write(f"{outcome.status} {text}\n".encode("utf-8", "replace"))

    return _UnixServer(path, Handler, mode)


def _hung_up(conn: socket.socket) -> bool:
    """The client closed its end: readable, and reading would return nothing
    (it has sent the whole message and sends nothing more)."""
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def guard_server(path: str, mode: int = 0o660) -> _UnixServer:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            # One connection carries many requests, each ended by an empty line.
            while True:
                line = self.rfile.readline(8192)
                if not line:
                    return
                if line.strip() == b"":
                    self.wfile.write(b"action=DUNNO\n\n")
                    self.wfile.flush()

    return _UnixServer(path, Handler, mode)
