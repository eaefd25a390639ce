"""A small authoritative DNS server on loopback (UDP and TCP), for tests.

Records live in a dict the test changes at will:
    zone.add("d.test", "MX", "10 mx.d.test.")
Names not in the zone get NXDOMAIN; a name with other types gets an empty
NOERROR answer. So tmail's resolver never leaves the machine in tests.
Every answer says how long it may be kept: `ttl`, 0 by default, since a
test changes its zone at will and tmail caches answers; negative answers
carry an SOA whose minimum says the same, as real servers' do.
"""
from __future__ import annotations

import socketserver
import struct
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class Zone:
    def __init__(self, ttl: int = 0):
        self.ttl = ttl
        self.records: dict[tuple[str, str], list[str]] = {}
        self.fail: set[str] = set()     # names answered with SERVFAIL
        self.silent: set[str] = set()   # names never answered (a black hole)
        self.queries: list[tuple[str, str]] = []

    def add(self, name: str, rdtype: str, *values: str) -> None:
        self.records.setdefault((name.lower().rstrip("."), rdtype.upper()), []).extend(values)

    def txt(self, name: str, text: str) -> None:
        """A TXT record, split into strings of at most 255 octets."""
        parts = [text[i:i + 250] for i in range(0, len(text), 250)] or [""]
        self.add(name, "TXT", " ".join('"' + p.replace('"', '\\"') + '"' for p in parts))

    def remove(self, name: str, rdtype: str | None = None) -> None:
        for key in list(self.records):
            if key[0] == name.lower().rstrip(".") and (rdtype is None or key[1] == rdtype.upper()):
                del self.records[key]

    def answer(self, wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        if name in self.silent:
            return None
        if name in self.fail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif not any(key[0] == name for key in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(self._soa(question.name))
        else:
            values = self.records.get((name, rdtype), [])
            if values:
                rdatas = [dns.rdata.from_text(dns.rdataclass.IN, question.rdtype, v) for v in values]
                response.answer.append(dns.rrset.from_rdata_list(question.name, self.ttl, rdatas))
            else:
                response.authority.append(self._soa(question.name))
        return response.to_wire()

    def _soa(self, name: dns.name.Name) -> dns.rrset.RRset:
        """The SOA of a negative answer (RFC 2308): the name's parent zone's."""
        zone = name.parent() if len(name) > 1 else name
        soa = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA,
                                  f"ns.{zone} hostmaster.{zone} 1 3600 600 86400 {self.ttl}")
        return dns.rrset.from_rdata_list(zone, self.ttl, [soa])


class _Udp(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        reply = self.server.zone.answer(data)
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _Tcp(socketserver.BaseRequestHandler):
    def handle(self):
        header = self.request.recv(2)
        if len(header) < 2:
            return
        (length,) = struct.unpack("!H", header)
        data = b""
        while len(data) < length:
            chunk = self.request.recv(length - len(data))
            if not chunk:
                return
            data += chunk
        reply = self.server.zone.answer(data)
        if reply is not None:
            self.request.sendall(struct.pack("!H", len(reply)) + reply)


class _UdpServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
    daemon_threads = True


class _TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class DnsServer:
    """Serves `zone` on 127.0.0.1, one port for UDP and TCP."""

    def __init__(self, zone: Zone):
        self.zone = zone
        for attempt in range(20):
            # a free UDP port's number may be a busy TCP port (a connection
            # of another instance): then another pair
            self.udp = _UdpServer(("127.0.0.1", 0), _Udp)
            self.port = self.udp.server_address[1]
            try:
                self.tcp = _TcpServer(("127.0.0.1", self.port), _Tcp)
                break
            except OSError:
                self.udp.server_close()
                if attempt == 19:
                    raise
        for server in (self.udp, self.tcp):
            server.zone = zone
            threading.Thread(target=server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        for server in (self.udp, self.tcp):
            server.shutdown()
            server.server_close()
