"""tmail-deliver: the Postfix pipe(8) command. One run per message.

It imports almost nothing and hands the message to the long-lived daemon
over a UNIX socket; the daemon holds the database and the SMTP connection.

`tmail postfix install` has pipe(8) run this file itself, with the
interpreter isolated and without the site module (`python3 -IS
.../deliver.py`), and it imports no Python module, nor its own package:
it costs what a bare interpreter's start costs (site, os and the package
were two milliseconds of every message). The console script
`tmail-deliver` is the same program, for a deliver_command set by hand.

pipe(8) bounces on every exit status but 0, 75 and 71, and on running past
tmail_time_limit. So: every failure here prints one short line and exits 75
(EX_TEMPFAIL), and an alarm fires well before Postfix's limit.

    tmail-deliver [--socket PATH] [--timeout SECONDS] QUEUE_ID SENDER RECIPIENT
"""
# The C modules under signal, socket and os: their Python wrappers import
# enum (5 ms, half of this process's imports, on every message), and os
# _collections_abc, posixpath and stat (a millisecond, under -S).
import _signal
import _socket
import posix
import sys

# tmail.mailpath.wire's two constants (the tests check they are the same):
# importing the package from site-packages was another millisecond.
MAGIC = b"TMAIL1 "
CHUNK = 64 * 1024

EX_OK, EX_TEMPFAIL = 0, 75
DEFAULT_SOCKET = "/run/tmail/deliver.sock"
DEFAULT_TIMEOUT = 600  # Postfix's command_time_limit is 1000 s


def _json_string(text: str) -> str:
    """`text` as a JSON string, every character but a few ASCII ones as a
    \\u escape (a lone surrogate from an undecodable argv byte too): what
    json.dumps gives the daemon's json.loads, without importing json and re
    (a third of this process's start-up, paid on every message)."""
    out = []
    for char in text:
        if char.isascii() and (char.isalnum() or char in "@.-_+=/:"):
            out.append(char)
        else:
            for unit in char.encode("utf-16-be", "surrogatepass").hex(" ", 2).split():
                out.append("\\u" + unit)
    return '"' + "".join(out) + '"'


def _tempfail(text):
    sys.stdout.write(f"4.3.0 {text}\n")
    sys.stdout.flush()
    posix._exit(EX_TEMPFAIL)


def _parse(argv):
    socket_path, timeout, rest = DEFAULT_SOCKET, DEFAULT_TIMEOUT, []
    args = iter(argv)
    for arg in args:
        if arg == "--socket":
            socket_path = next(args)
        elif arg == "--timeout":
            timeout = int(next(args))
        elif arg == "--":
            rest.extend(args)
        else:
            rest.append(arg)
    if len(rest) != 3:
        raise ValueError("usage: tmail-deliver [--socket PATH] [--timeout S] QUEUE_ID SENDER RECIPIENT")
    return socket_path, timeout, rest


def _read_line(conn, limit: int = 4096) -> bytes:
    """The daemon's one-line answer (the raw socket has no makefile)."""
    data = b""
    while b"\n" not in data and len(data) < limit:
        chunk = conn.recv(limit)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


def run(argv, stdin):
    socket_path, timeout, (queue_id, sender, recipient) = _parse(argv)
    _signal.signal(_signal.SIGALRM, lambda *_: _tempfail("tmail timed out; will retry"))
    _signal.alarm(timeout)
    # The daemon is told how long this process waits: it abandons the
    # delivery rather than send a message whose success nobody will hear of
    # (Postfix would retry it: a duplicate).
    header = (f'{{"queue_id": {_json_string(queue_id)}, "sender": {_json_string(sender)}, '
              f'"recipient": {_json_string(recipient)}, "timeout": {int(timeout)}}}')
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        conn.connect(socket_path)
    except OSError as exc:
        _tempfail(f"tmail daemon unavailable ({exc.strerror}); will retry")
    conn.sendall(MAGIC + header.encode("utf-8", "surrogateescape") + b"\n")
    while True:
        data = stdin.read(CHUNK)
        if not data:
            break
        conn.sendall(b"%x\n" % len(data) + data)
    conn.sendall(b"0\n")
    reply = _read_line(conn).decode("utf-8", "replace").strip()
    status, _, text = reply.partition(" ")
    if not status.isdigit():
        _tempfail("no answer from the tmail daemon; will retry")
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return int(status)


def main():
    try:
        code = run(sys.argv[1:], sys.stdin.buffer)
    except BaseException as exc:  # noqa: BLE001 - every failure must defer, never bounce
        _tempfail(f"tmail-deliver failed ({type(exc).__name__}); will retry")
    posix._exit(code)


if __name__ == "__main__":
    main()
