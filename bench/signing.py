"""What DKIM signing and ARC sealing cost, through a real Postfix.

One private Postfix instance and one tmail daemon; two alias domains
alternate round by round, so drift on a noisy machine hits both:
  - off: d.test has no DKIM key (nor has the SRS domain): verification,
    DMARC and Authentication-Results as always, nothing signed or sealed;
  - on: signed.test has RSA-2048 and ed25519 keys: two DKIM signatures
    and an ARC set on every message.
Then the memory of one 20 MB message with signing on: the daemon's peak
growth, beside a baseline measured in the same run: dkimpy signing and
sealing the same message whole (its documented API), in a child process.

    /opt/tmail-test/venv/bin/python bench/signing.py [--messages 1000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from forwarding import SmtpSink, alternating_rates, big_message, forward_rate, memory  # noqa: E402
from harness import Instance  # noqa: E402

BASELINE = r"""
import resource, sys, dkim
message = sys.stdin.buffer.read().replace(b"\n", b"\r\n")
key = open(sys.argv[1], "rb").read()
ar = b"Authentication-Results: mx.fwd.test; spf=pass smtp.mailfrom=a@orig.test; arc=none\r\n"
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sig = dkim.sign(message, b"s1", b"signed.test", key, canonicalize=(b"relaxed", b"simple"))
seal = dkim.arc_sign(ar + sig + message, b"s1", b"signed.test", key, b"mx.fwd.test")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before * 1024, peak * 1024)
"""


def setup(mx):
    mx.tmail("domain", "add", "signed.test", as_root=True)
    shown = json.loads(mx.tmail("dkim", "keygen", "--domain", "signed.test", "--selector", "s1",
                                "--json", as_root=True).stdout)
    for record in shown["records"]:
        mx.zone.txt(record["name"], record["value"])
    mx.zone.txt("orig.test", "v=spf1 ip4:127.0.0.1 -all")
    mx.zone.txt("_dmarc.orig.test", "v=DMARC1; p=none")
    mx.tmail("alias", "add", "fwd", "--domain", "d.test", "--to", "off-dest@real.test")
    mx.tmail("alias", "add", "fwd", "--domain", "signed.test", "--to", "on-dest@real.test")
    return next(r["path"] for r in shown["records"] if r["algorithm"] == "rsa")


def baseline_memory(key_path, message):
    result = subprocess.run([sys.executable, "-c", BASELINE, key_path], input=message,
                            capture_output=True, check=True)
    before, peak = map(int, result.stdout.split())
    return peak - before


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sink = SmtpSink()
    mx = Instance(sink.port)
    sink.mx = mx
    try:
        mx.setup()
        key_path = setup(mx)
        # memory first, while the daemon's high-water mark is still its idle
        # one; after one small message, so that first-use imports (dkimpy,
        # OpenSSL, the public suffix list) are not counted as the message's
        forward_rate(mx, sink, 1, "fwd@signed.test", "on-dest@real.test")
        size, pipe_rss, daemon_growth = memory(mx, "fwd@signed.test")
        base = baseline_memory(key_path, big_message("fwd@signed.test"))
        print(f"20 MB message ({size / 2**20:.1f} MiB), signed and sealed: daemon peak grew by "
              f"{daemon_growth / 2**20:.1f} MiB, tmail-deliver peak RSS {pipe_rss / 2**20:.1f} MiB;"
              f" baseline dkimpy on the whole message: +{base / 2**20:.1f} MiB")
        signed = [line for line in mx.tmail_log().splitlines() if "fwd@signed.test" in line][-1:]
        print("  last delivery:", signed[0].split("INFO ", 1)[-1] if signed else "?")
        rates = alternating_rates(mx, sink, args, {
            "signing+sealing off": ("fwd@d.test", "off-dest@real.test"),
            "signing+sealing on": ("fwd@signed.test", "on-dest@real.test")})
        ratio = max(rates["signing+sealing on"]) / max(rates["signing+sealing off"])
        print(f"  on / off = {ratio:.2f}x (target >= 0.7x)")

    finally:
        mx.teardown()
        sink.close()


if __name__ == "__main__":
    main()
