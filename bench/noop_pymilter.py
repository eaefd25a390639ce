"""pymilter's floor under tmail's milter (bench only): the same callbacks
negotiated the same way (CONNECT, HELO and MAIL FROM not awaited, RCPT
answered, ACCEPT at DATA) and no work at all in them.

    python bench/noop_pymilter.py unix:/path/to/socket
"""
import sys

import Milter


class Noop(Milter.Base):
    @Milter.noreply
    def connect(self, hostname, family, hostaddr):
        return Milter.CONTINUE

    @Milter.noreply
    def hello(self, hostname):
        return Milter.CONTINUE

    @Milter.noreply
    def envfrom(self, sender, *params):
        return Milter.CONTINUE

    def envrcpt(self, recipient, *params):
        return Milter.CONTINUE

    def data(self):
        return Milter.ACCEPT


if __name__ == "__main__":
    import milter
    Milter.factory = Noop
    milter.setbacklog(256)
    Milter.runmilter("noop", sys.argv[1], timeout=30)
