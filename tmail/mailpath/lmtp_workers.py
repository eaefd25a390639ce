"""LMTP deliveries in processes of their own.

A delivery is Python's CPU work (verifying, signing and sealing, the
database), and one process runs one thread of Python at a time: a daemon
that delivered in its own process topped out at one core. So the daemon
binds the LMTP socket and starts [daemon] lmtp_processes workers that
accept on it, each with its own Service and Delivery; the kernel gives
each connection Postfix opens to one of them. The daemon keeps the
milter, the pipe's socket and the guard.

What must hold across processes does: an attempt at a message waits for
another at the same message in any process (SharedLocks, inherited); each
worker has its own database connections, and SQLite's file lock orders
the writers of different processes. A worker is given the daemon's
configuration as the daemon read it (not the file as it is now), and is
started again when it dies. Told to stop (SIGTERM), or finding the daemon
gone however it ended (the daemon's end of a pipe closes), it takes no new
delivery and answers those in progress before it exits (tmail.mailpath.draining).

    python -m tmail.mailpath.lmtp_workers LISTEN_FD LOCKS_FD ALIVE_FD [LOG_FILE]
    (the configuration, as JSON, on stdin)
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from .. import config as config_mod
from .draining import DRAIN, GRACE

log = logging.getLogger("tmail.lmtp")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}

POOL = {"pool_size": 5, "max_overflow": 10}    # each worker's (PostgreSQL, MariaDB)
MAX_PAUSE = 60.0       # between restarts of a worker that keeps dying at once


class Workers:
    """The daemon's side: start `count` workers on `listener` and keep them running."""

    def __init__(self, cfg, log_file: str | None, listener: socket.socket, locks, count: int):
        self.cfg, self.log_file, self.listener, self.locks = cfg, log_file, listener, locks
        self.count = count
        # The workers hold the read end; the daemon's write end closes when
        # it exits, killed or not, and the workers see end of file.
        self._alive_read, self._alive_write = os.pipe()
        self._running: dict[int, subprocess.Popen] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        for slot in range(self.count):
            threading.Thread(target=self._keep, args=(slot,), name=f"tmail-lmtp-worker-{slot}",
                             daemon=True).start()

    def _keep(self, slot: int) -> None:
        pause = 1.0
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                started = time.monotonic()
                try:
                    process = self._running[slot] = self._spawn()
                except OSError as exc:    # no interpreter to run, no processes left
                    log.error("LMTP worker %d cannot be started: %s", slot, exc)
                    process = None
            if process is not None:
                status = process.wait()
                if self._stopping.is_set():
                    return
                log.error("LMTP worker %d (pid %d) ended with status %d", slot, process.pid, status)
            pause = 1.0 if time.monotonic() - started > MAX_PAUSE else min(pause * 2, MAX_PAUSE)
            log.info("LMTP worker %d: starting it again in %g s", slot, pause)
            self._stopping.wait(pause)

    def _spawn(self) -> subprocess.Popen:
        fds = (self.listener.fileno(), self.locks.fd, self._alive_read)
        # -P: the working directory is not put on the module path (a json.py
        # there would run as tmail)
        command = [sys.executable, "-P", "-m", __name__, *map(str, fds)]
        if self.log_file:
            command.append(self.log_file)
        # in the daemon's working directory: a relative path in the
        # configuration (a SQLite file) names the same file
        process = subprocess.Popen(command, stdin=subprocess.PIPE, pass_fds=fds)
        assert process.stdin is not None
        try:
            with process.stdin:
                process.stdin.write(json.dumps({"path": self.cfg.path, "data": self.cfg.data}).encode())
        except BrokenPipeError:
            pass        # it died at once: its status says why, and it is started again
        return process

    def stop(self, grace: float = GRACE + 5) -> None:
        """Each worker finishes its deliveries in progress (SIGTERM), killed
        if it takes longer than `grace`."""
        with self._lock:
            self._stopping.set()
            running = list(self._running.values())
        for process in running:
            process.terminate()
        for process in running:
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _watch_daemon(alive_fd: int, stop) -> None:
    while os.read(alive_fd, 1):
        pass
    log.info("the daemon is gone: LMTP worker %d stops", os.getpid())
    stop()


def main(argv: list[str] | None = None) -> None:
    from .daemon import build_service, setup_logging
    from .following import Follower
    from .lmtp import lmtp_server
    from .shared_locks import SharedLocks

    # The daemon blocks these for libmilter's signal thread; a child inherits that.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    listen_fd, locks_fd, alive_fd, *rest = argv if argv is not None else sys.argv[1:]
    given = json.loads(sys.stdin.buffer.read())
    cfg = config_mod.Config(given["path"], given["data"])
    setup_logging(cfg["daemon"]["log_level"], rest[0] if rest else None)
    try:
        service, delivery = build_service(cfg, SharedLocks(int(locks_fd)), pool=POOL)
        if cfg.fleet:
            Follower(cfg, service.engine, service.policy, delivery.deliverability.keys,
                     report=False).start()
        server = lmtp_server(socket.socket(fileno=int(listen_fd)), delivery, hostname=socket.getfqdn())
    except Exception:
        log.exception("LMTP worker %d cannot run", os.getpid())
        sys.exit(1)

    def stop(*_) -> None:
        """No new deliveries from now on (serve_forever returns in the main
        thread: shutdown() waits for it, so it runs on a thread of its own)."""
        DRAIN.stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    for number in STOP_SIGNALS:
        signal.signal(number, stop)
    threading.Thread(target=_watch_daemon, args=(int(alive_fd), stop), daemon=True).start()
    log.info("LMTP worker %d ready", os.getpid())
    server.serve_forever()
    left = DRAIN.stop()
    log.info("LMTP worker %d stopped%s", os.getpid(),
             f" ({left} deliveries cut short)" if left else "")
    logging.shutdown()
    os._exit(0)     # idle sessions' threads and the pools' are not waited for


if __name__ == "__main__":
    main()
