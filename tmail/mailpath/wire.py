"""The protocol between tmail-deliver (the pipe) and the daemon.

Standard library only: the pipe side imports this on every message.

    client: b"TMAIL1 " + JSON header + b"\n", then the message as chunks,
            each b"<hex length>\n" + data, ended by b"0\n"
    server: b"<exit status> <one short line>\n"

The explicit end marker matters: a pipe killed half-way closes the socket
without it, and the daemon then abandons the SMTP transaction instead of
forwarding a truncated message.
"""
MAGIC = b"TMAIL1 "
CHUNK = 64 * 1024
MAX_HEADER_LINE = 64 * 1024


class WireError(Exception):
    pass


def read_chunks(rfile):
    """Yield the message chunks from a client; WireError if it stops early."""
    while True:
        line = rfile.readline(32)
        if not line.endswith(b"\n"):
            raise WireError("the client went away before the end of the message")
        try:
            size = int(line, 16)
        except ValueError:
            raise WireError("bad chunk length") from None
        if size == 0:
            return
        if size < 0 or size > 16 * CHUNK:
            raise WireError("chunk too large")
        data = rfile.read(size)
        if len(data) != size:
            raise WireError("the client went away in the middle of a chunk")
        yield data
