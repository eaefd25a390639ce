"""tmail-deliver: the Postfix pipe(8) command. One run per message.

It imports almost nothing and hands the message to the long-lived daemon
over a UNIX socket; the daemon holds the database and the SMTP connection.

pipe(8) bounces on every exit status but 0, 75 and 71, and on running past
tmail_time_limit. So: every failure here prints one short line and exits 75
(EX_TEMPFAIL), and an alarm fires well before Postfix's limit.

    tmail-deliver [--socket PATH] [--timeout SECONDS] QUEUE_ID SENDER RECIPIENT
"""
import json
import os
import signal
import socket
import sys

from .wire import CHUNK, MAGIC

EX_OK, EX_TEMPFAIL = 0, 75
DEFAULT_SOCKET = "/run/tmail/deliver.sock"
DEFAULT_TIMEOUT = 600  # Postfix's command_time_limit is 1000 s


def _tempfail(text):
    sys.stdout.write(f"4.3.0 {text}\n")
    sys.stdout.flush()
    os._exit(EX_TEMPFAIL)


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


def run(argv, stdin):
    socket_path, timeout, (queue_id, sender, recipient) = _parse(argv)
    signal.signal(signal.SIGALRM, lambda *_: _tempfail("tmail timed out; will retry"))
    signal.alarm(timeout)
    # The daemon is told how long this process waits: it abandons the
    # delivery rather than send a message whose success nobody will hear of
    # (Postfix would retry it: a duplicate).
    header = json.dumps({"queue_id": queue_id, "sender": sender, "recipient": recipient,
                         "timeout": timeout})
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
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
    reply = conn.makefile("rb").readline(4096).decode("utf-8", "replace").strip()
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
    os._exit(code)


if __name__ == "__main__":
    main()
