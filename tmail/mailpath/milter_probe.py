"""The MTA's side of the milter protocol, enough to ask tmail's running
milter what it negotiates (`tmail postfix check`) and to drive it as
Postfix does (tests). A negotiation that fails in pymilter's C module
falls back, silently, to every callback sent and awaited: only the wire
shows it.

Packets are a 4-byte length, a command letter and its data (Sendmail's
libmilter/docs, Postfix's milter8.c).
"""
from __future__ import annotations

import socket
import struct

VERSION = 6
OFFERED_ACTIONS = 0x1FF          # every action Postfix knows, SETSYMLIST (0x100) among them
OFFERED_PROTOCOL = 0x1FFFFF      # every step it may leave out or not wait for
MAX_PACKET = 1024 * 1024          # libmilter's largest (a body chunk at its biggest negotiated size)
NR_CONN, NR_HELO, NR_MAIL = 0x1000, 0x2000, 0x4000
NOT_AWAITED = {"CONNECT": NR_CONN, "HELO": NR_HELO, "MAIL FROM": NR_MAIL}


class MilterClient:
    def __init__(self, path: str, timeout: float = 5):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.sock.close()

    def send(self, command: bytes, data: bytes = b"") -> None:
        self.sock.sendall(struct.pack("!I", len(data) + 1) + command + data)

    def macros(self, stage: bytes, **values: str) -> None:
        """Macros for the next command (`stage`: its letter)."""
        self.send(b"D", stage + b"".join(f"{{{k}}}\0{v}\0".encode() for k, v in values.items()))

    def reply(self) -> tuple[bytes, bytes]:
        (length,) = struct.unpack("!I", self._read(4))
        if not 0 < length <= MAX_PACKET:
            raise ConnectionError(f"not a milter packet: {length} bytes announced")
        packet = self._read(length)
        return packet[:1], packet[1:]

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the milter closed the connection")
            data += chunk
        return data

    def negotiate(self, actions: int = OFFERED_ACTIONS) -> tuple[int, int, dict[int, str]]:
        """(actions, protocol, {stage: macro list}) as the milter answers."""
        self.send(b"O", struct.pack("!III", VERSION, actions, OFFERED_PROTOCOL))
        command, data = self.reply()
        if command != b"O" or len(data) < 12:
            raise ConnectionError(f"not a milter negotiation answer: {command!r}")
        _version, actions, protocol = struct.unpack("!III", data[:12])
        lists, rest = {}, data[12:]
        while len(rest) > 4:
            (stage,) = struct.unpack("!I", rest[:4])
            text, _, rest = rest[4:].partition(b"\0")
            lists[stage] = text.decode("ascii", "replace")
        return actions, protocol, lists


def check(path: str) -> tuple[bool, str]:
    """Whether tmail's milter at `path` answers and negotiates as designed."""
    try:
        with MilterClient(path, timeout=3) as client:
            _actions, protocol, lists = client.negotiate()
    except OSError as exc:
        return False, f"{path}: {getattr(exc, 'strerror', None) or exc}"
    awaited = [step for step, bit in NOT_AWAITED.items() if not protocol & bit]
    if awaited or not lists:
        return False, (f"{path}: the negotiation fell back to every step, each awaited "
                       f"({', '.join(awaited) or 'no macro lists'}): see the daemon's log")
    return True, f"{path}: answers; CONNECT, HELO and MAIL FROM not awaited"
