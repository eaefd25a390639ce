"""The daemon's part in a fleet (several hosts on one database): every
[fleet] sync_interval_s it re-reads the SRS secrets (in a fleet they live in
the database, and a rotation on any host must reach this one) and reports
what it uses, for `tmail doctor` on any host to compare. An LMTP worker
follows the secrets too, and leaves the report to the daemon."""
from __future__ import annotations

import logging
import threading

from .. import __version__
from .. import config as config_mod
from ..core.durations import utcnow
from ..db import fleet

log = logging.getLogger("tmail.following")


class Follower:
    def __init__(self, cfg, engine, policy, keys, report: bool = True):
        self.cfg, self.engine, self.policy, self.keys = cfg, engine, policy, keys
        self.report = report
        self.interval = cfg["fleet"]["sync_interval_s"]
        self.stopped = threading.Event()

    def once(self) -> None:
        codec = self.policy.srs
        if self.cfg.fleet and codec is not None:
            secrets = config_mod.srs_secrets(self.cfg, self.engine)
            if secrets != codec.secrets:
                log.info("SRS secrets changed in the database: %d now", len(secrets))
                codec.secrets = secrets      # one reference swap: readers see old or new
        if not self.report:
            return
        sealer = self.cfg.sealer() if self.cfg.fleet else None
        with self.engine.begin() as conn:
            fleet.report(conn, self.cfg.host_name, version=__version__, daemon_seen_at=utcnow(),
                         fleet_key_id=sealer.key_id if sealer else "",
                         keys_digest=fleet.keys_digest(self.keys, sealer),
                         srs_digest=fleet.secrets_digest(codec.secrets, sealer) if codec else "")

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.once()
            except Exception as exc:    # the database away, a key that does not open: next time
                log.warning("could not refresh from the shared database: %s", exc)

    def start(self) -> None:
        try:
            self.once()
        except Exception as exc:
            log.warning("could not report to the shared database: %s", exc)
        threading.Thread(target=self.run, name="tmail-follower", daemon=True).start()
