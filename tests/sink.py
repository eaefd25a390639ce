"""A recording SMTP sink on loopback, standing in for the destinations'
mail servers. It can refuse chosen recipients (to produce bounces)."""
from __future__ import annotations

import socketserver
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Received:
    mail_from: str
    rcpts: list[str]
    data: bytes
    params: str = ""


@dataclass
class Sink:
    reject: set[str] = field(default_factory=set)     # lower-case addresses refused with 550
    messages: list[Received] = field(default_factory=list)
    connections: int = 0          # SMTP sessions opened so far
    pipelining: bool = True       # offered in the EHLO reply (RFC 2920)

    def __post_init__(self):
        self.lock = threading.Condition()
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line):
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self):
                with sink.lock:
                    sink.connections += 1
                self.reply("220 sink.test ESMTP")
                mail_from, rcpts, params = None, [], ""
                while True:
                    line = self.rfile.readline(70000)
                    if not line:
                        return
                    cmd = line.decode("utf-8", "replace").rstrip("\r\n")
                    verb = cmd[:4].upper()
                    if verb in ("EHLO", "HELO"):
                        self.wfile.write(b"250-sink.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
                                         + (b"250-PIPELINING\r\n" if sink.pipelining else b"")
                                         + b"250 SIZE 100000000\r\n")
                    elif verb == "MAIL":
                        addr, _, params = cmd[10:].partition(">")
                        mail_from, rcpts = addr.lstrip("<"), []
                        self.reply("250 ok")
                    elif verb == "RCPT":
                        rcpt = cmd[8:].split(">")[0].lstrip("<")
                        if rcpt.lower() in sink.reject:
                            self.reply(f"550 5.1.1 <{rcpt}>: mailbox unavailable here")
                        else:
                            rcpts.append(rcpt)
                            self.reply("250 ok")
                    elif verb == "DATA":
                        self.reply("354 go")
                        chunks = []
                        while True:
                            data = self.rfile.readline()
                            if data == b"":
                                return      # closed before the final dot: nothing was sent (as Postfix)
                            if data == b".\r\n":
                                break
                            chunks.append(data[1:] if data.startswith(b"..") else data)
                        with sink.lock:
                            sink.messages.append(Received(mail_from, rcpts, b"".join(chunks), params.strip()))
                            sink.lock.notify_all()
                        self.reply("250 2.0.0 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 ok")

        class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128  # Postfix opens many connections at once

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, predicate, timeout=30.0, what="messages"):
        """Wait until predicate(messages) is true; return the matching list."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                found = [m for m in self.messages if predicate(m)]
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} arrived within {timeout}s; got "
                                         f"{[(m.mail_from, m.rcpts) for m in self.messages]}")
                self.lock.wait(left)

    def to(self, address):
        return [m for m in self.messages if address.lower() in (r.lower() for r in m.rcpts)]
