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
import socketserver

from .wire import MAGIC, MAX_HEADER_LINE, read_chunks

log = logging.getLogger("tmail.server")


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    # socketserver's default backlog is 5: a burst of smtpd processes (or of
    # pipe deliveries) would find the socket refusing them, and the guard's
    # default_action would defer good mail.
    request_queue_size = 256

    def __init__(self, path: str, handler, mode: int):
        if os.path.exists(path):
            os.unlink(path)  # a stale socket from a killed daemon
        os.makedirs(os.path.dirname(path), exist_ok=True)
        old = os.umask(0o777 & ~mode)
        try:
            super().__init__(path, handler)
        finally:
            os.umask(old)
        os.chmod(path, mode)


def deliver_server(path: str, service, mode: int = 0o660) -> _UnixServer:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            line = self.rfile.readline(MAX_HEADER_LINE)
            if not line.startswith(MAGIC) or not line.endswith(b"\n"):
                self.wfile.write(b"75 4.3.0 protocol error\n")
                return
            try:
                request = json.loads(line[len(MAGIC):].decode("utf-8", "surrogateescape"))
            except ValueError:
                self.wfile.write(b"75 4.3.0 protocol error\n")
                return
            outcome = service.deliver(request, read_chunks(self.rfile))
            text = " ".join(outcome.text.split())[:400]
            self.wfile.write(f"{outcome.status} {text}\n".encode("utf-8", "replace"))

    return _UnixServer(path, Handler, mode)


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
