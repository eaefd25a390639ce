"""The long-lived tmail daemon: milter, delivery socket and policy guard."""
from __future__ import annotations

import logging
import os
import re
import signal
import socket
import threading

from .. import config as config_mod


def socket_path(cfg, key: str) -> str:
    """Milter and guard paths are relative to Postfix's queue directory, as
    its (possibly chrooted) smtpd sees them."""
    path = cfg["daemon"][key]
    if os.path.isabs(path):
        return path
    return os.path.join(cfg["daemon"]["postfix_queue_directory"], path)


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class EscapingFormatter(logging.Formatter):
    """Escapes control characters in log messages: addresses and names come
    from SMTP clients, and a CR, LF or ESC in them must not forge a log line
    or a terminal's state. Tracebacks, appended after, keep their lines."""

    def formatMessage(self, record):
        record.message = _UNPRINTABLE.sub(
            lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"),
            record.message)
        return super().formatMessage(record)


def setup_logging(level: str, log_file: str | None) -> None:
    handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler()
    handler.setFormatter(EscapingFormatter(
        "%(asctime)s tmail[%(process)d]: %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def build_service(cfg, locks=None, pool: dict | None = None):
    """The Service (database, verdicts) and the Delivery built on it.
    locks: the SharedLocks of the daemon's processes; pool: the engine's
    connection pool (PostgreSQL, MariaDB)."""
    from ..db.engine import make_engine
    from .arrival import checker, dkim_verifier, unsigned_dmarc
    from .deliverability import from_config as deliverability_from_config
    from .delivery import Delivery
    from .service import Service
    db, d = cfg["database"], cfg["daemon"]
    if db["url"].startswith("sqlite"):
        pool = {}
    elif pool is None:
        pool = {"pool_size": 10, "max_overflow": 20}
    engine = make_engine(db["url"], db["busy_timeout_ms"], op_timeout=db["timeout_s"], **pool)
    policy = config_mod.policy(cfg, engine)
    if policy.srs is None:
        raise config_mod.ConfigError(f"{cfg.path}: [srs] domain is required to forward mail")
    resolver = cfg.resolver()
    resolver.install()   # pyspf and dkimpy's fallbacks use dnspython's default resolver
    dns_timeout, dkim_cfg = cfg["dns"]["timeout_s"], cfg["dkim"]
    service = Service(engine, policy, deadline=d["verdict_timeout_s"],
                      max_received=d["max_received_headers"], authserv_id=cfg.authserv_id,
                      spf_check=checker(dns_timeout) if dkim_cfg["check_spf"] else None,
                      dmarc_check=unsigned_dmarc(resolver.txt, dns_timeout)
                      if dkim_cfg["check_spf"] and dkim_cfg["reject_dmarc_failures"] else None,
                      dkim_check=dkim_verifier(resolver.txt, dns_timeout),
                      notice_every=cfg.duration("replies", "notice_every").total_seconds(),
                      locks=locks)
    delivery = Delivery(service, (d["reinject_host"], d["reinject_port"]),
                        reinject_timeout=d["reinject_timeout_s"], helo=socket.getfqdn(),
                        deliverability=deliverability_from_config(cfg, resolver.txt, engine),
                        notice_from=cfg.notice_from, keep_user_agent=cfg["replies"]["keep_user_agent"],
                        locks=locks)
    service.notify = delivery.notify
    return service, delivery


def run(cfg, log_file: str | None = None) -> None:
    import Milter

    from .draining import DRAIN
    from .following import Follower
    from .lmtp import lmtp_server
    from .lmtp_workers import STOP_SIGNALS, Workers
    from .milter import make_factory
    from .servers import deliver_server, guard_server, unix_listener
    from .shared_locks import SharedLocks

    # Blocked in every thread (each inherits it from this one), the stop
    # signals go to libmilter's own signal thread: runmilter returns and the
    # daemon stops in order. Unblocked, the kernel handed SIGTERM to any
    # thread and its default action ended the process mid-delivery.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    setup_logging(cfg["daemon"]["log_level"], log_file)
    log = logging.getLogger("tmail")
    locks = SharedLocks()
    service, delivery = build_service(cfg, locks)
    with service.read() as store:
        store.domain_names()   # fail early if the database is unreachable
    Follower(cfg, service.engine, service.policy, delivery.deliverability.keys).start()
    servers = [deliver_server(cfg["daemon"]["deliver_socket"], delivery),
               guard_server(socket_path(cfg, "policy_socket"))]
    lmtp_path, processes = socket_path(cfg, "lmtp_socket"), cfg["daemon"]["lmtp_processes"]
    workers = None
    if processes:
        workers = Workers(cfg, log_file, unix_listener(lmtp_path, 0o660), locks, processes)
        workers.start()
    else:
        servers.append(lmtp_server(lmtp_path, delivery, hostname=socket.getfqdn()))
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    milter_path = socket_path(cfg, "milter_socket")
    os.makedirs(os.path.dirname(milter_path), exist_ok=True)
    Milter.factory = make_factory(service)
    # A burst of smtpd processes connecting at once must not overflow the
    # listen queue: a refused milter connection means default_action=accept,
    # i.e. mail accepted unchecked.
    import milter as libmilter
    libmilter.setbacklog(256)
    # The milter socket (libmilter makes it 0777 less the umask): owner and
    # group read-write, 0660; its directory's group (setgid, tmail-postfix)
    # is the one the postfix user is in.
    os.umask(0o117)
    log.info("tmail daemon ready: milter %s, deliver %s, guard %s, lmtp %s (%s)", milter_path,
             cfg["daemon"]["deliver_socket"], socket_path(cfg, "policy_socket"), lmtp_path,
             f"{processes} worker processes" if processes else "in this process")
    try:
        Milter.runmilter("tmail", "unix:" + milter_path, timeout=30)
    finally:
        log.info("tmail daemon stopping: deliveries in progress are finished first")
        DRAIN.stopping.set()
        for server in servers:
            server.shutdown()
            server.server_close()
        if workers is not None:
            workers.stop()
        left = DRAIN.stop()
        log.info("tmail daemon stopped%s", f" ({left} deliveries cut short)" if left else "")
