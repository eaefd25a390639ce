"""Forwarding through a real Postfix: tmail against two baselines, the
milter's cost on other mail, and the pipe's memory on a 20 MB message.

All numbers come from one run on one private Postfix instance (the machine
is noisy: compare only side by side):
  - msg/s for N 1 KB messages (smtp-source -> Postfix -> ... -> sink):
    native virtual_alias_maps forwarding, a minimal stdlib pipe script
    (bench/minimal_pipe.py), tmail through the pipe and tmail through LMTP
    (`tmail postfix install --transport`, switched between turns), with
    d.test's DKIM keys active, so tmail signs (RSA and ed25519) and seals;
  - CPU per forwarded message for each: Postfix's processes (the pipe's
    tmail-deliver among them) and the tmail daemon with its LMTP workers;
  - acceptance rate of mail that is not tmail's: no milter, tmail's, and
    two milters of the same shape that do nothing (libmilter in C,
    bench/noop_milter.c, and pymilter, bench/noop_pymilter.py): the floor
    any milter costs (outbound delivery held, so only smtpd's work is timed);
  - peak RSS of tmail-deliver, and the daemon's peak growth, on 20 MB;
  - tmail-deliver's own CPU per 1 KB message (under pipe(8) it is counted
    with Postfix's processes), against a bare interpreter's start and exit.

    /opt/tmail-test/venv/bin/python bench/forwarding.py [--messages 2000] [--rounds 2]
        [--only forwarding|acceptance|memory|pipe]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
from harness import DELIVER, Instance, free_port, wait_until  # noqa: E402

from tmail.postfix_wiring import deliver_command  # noqa: E402

# What pipe(8) runs for tmail (tmail postfix install's default; DELIVER is
# the console script an admin may name instead).
PIPE_COMMAND = deliver_command({"postfix": {"deliver_command": ""}}).split()


class SmtpSink:
    """Postfix's smtp-sink stands in for the destinations; what reached it is
    counted from Postfix's log (status=sent lines per recipient)."""

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen(["smtp-sink", "-u", "postfix", f"127.0.0.1:{self.port}", "256"])
        self.mx = None
        self.offset = 0
        self.sent: dict[str, int] = {}

    def count(self, rcpt: str) -> int:
        """Read only what the log gained since the last call."""
        with open(f"{self.mx.base}/maillog", "rb") as log:
            log.seek(self.offset)
            data = log.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        marker = f", relay=127.0.0.1[127.0.0.1]:{self.port},".encode()
        for line in data[:end].splitlines():
            if marker in line and b"status=sent" in line:
                to = line.split(b"to=<", 1)[1].split(b">", 1)[0].decode()
                self.sent[to] = self.sent.get(to, 0) + 1
        return self.sent.get(rcpt, 0)

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)


def smtp_source(mx, count, to, sessions=20, size=1024):
    t0 = time.perf_counter()
    result = subprocess.run(["smtp-source", "-l", str(size), "-m", str(count), "-s", str(sessions),
                             "-f", "bench@orig.test", "-t", to, f"127.0.0.1:{mx.smtp_port}"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"smtp-source to {to} failed: {result.stdout}{result.stderr}"
                         f"\n{mx.tmail_log()[-2000:]}")
    return time.perf_counter() - t0


TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int, children: bool = True) -> float:
    """Seconds of CPU a process used (and, with `children`, its reaped
    descendants: an exited smtpd, pipe or tmail-deliver is counted in its
    parent's cutime once waited for, so nothing is lost or counted twice)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    used = int(fields[11]) + int(fields[12])                 # utime, stime
    if children:
        used += int(fields[13]) + int(fields[14])            # cutime, cstime
    return used / TICK


def _descendants(root: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parents[int(entry)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += [child for child, parent in parents.items() if parent == pid]
    return found


def tree_cpu(root: int) -> float:
    """A process and everything under it, live or reaped."""
    return sum(_cpu_of(pid) for pid in _descendants(root))


def postfix_cpu(mx) -> float:
    with open(f"{mx.queue}/pid/master.pid") as handle:
        return tree_cpu(int(handle.read().split()[0]))


def cpu_now(mx) -> tuple[float, float]:
    """Postfix's processes; the daemon's (its LMTP worker processes included)."""
    return postfix_cpu(mx), tree_cpu(mx.daemon.pid)


def cpu_per_message(mx, before: tuple[float, float], count: int) -> tuple[float, ...]:
    """CPU ms per message since `before` (a cpu_now()): Postfix's, the daemon's."""
    return tuple(1000 * (a - b) / count for a, b in zip(cpu_now(mx), before, strict=True))


def forward_rate(mx, sink, count, to, dest):
    """msg/s, and CPU ms per message of Postfix's processes and of the daemon."""
    before = sink.count(dest)
    cpu_before = cpu_now(mx)
    t0 = time.perf_counter()
    smtp_source(mx, count, to)
    wait_until(lambda: sink.count(dest) >= before + count, timeout=900,
               what=f"{count} messages to {dest}", interval=0.1)
    rate = count / (time.perf_counter() - t0)
    return rate, cpu_per_message(mx, cpu_before, count)


def setup_baselines(mx):
    script = f"{mx.base}/minimal_pipe.py"
    shutil.copy(os.path.join(HERE, "minimal_pipe.py"), script)
    os.chmod(script, 0o755)
    transport = subprocess.run(["postconf", "-c", mx.conf, "-h", "transport_maps"],
                               capture_output=True, text=True).stdout.strip()
    relay = subprocess.run(["postconf", "-c", mx.conf, "-h", "relay_domains"],
                           capture_output=True, text=True).stdout.strip()
    mx.postconf("virtual_alias_domains=native.test",
                "virtual_alias_maps=inline:{ {fwd@native.test=native-dest@real.test} }",
                f"transport_maps=inline:{{ minimal.test=minimal: }}, {transport}",
                f"relay_domains={relay}, minimal.test",
                "minimal_destination_recipient_limit=1")
    subprocess.run(["postconf", "-c", mx.conf, "-M",
                    f"minimal/unix=minimal unix - n n - - pipe flags=D null_sender= user=tmail "
                    f"argv=/usr/bin/python3 {script} {mx.reinject_port} minimal-dest@real.test ${{sender}}"],
                   check=True)
    mx.reload()
    mx.tmail("alias", "add", "fwd", "--domain", "d.test", "--to", "tmail-dest@real.test")
    # signing on: forwarded mail gets d.test's DKIM signatures and ARC set
    mx.tmail("dkim", "keygen", "--domain", "d.test", "--selector", "bench", as_root=True)


def acceptance(mx, count, milters: str, pid: int | None):
    """msg/s, and CPU ms per message of Postfix's processes and of the milter
    process `pid` (None: no milter)."""
    mx.postconf(f"smtpd_milters={milters}")
    mx.reload()
    time.sleep(1)
    before = postfix_cpu(mx), tree_cpu(pid) if pid else 0.0
    rate = count / smtp_source(mx, count, "someone@elsewhere.test")
    after = postfix_cpu(mx), tree_cpu(pid) if pid else 0.0
    return rate, tuple(1000 * (a - b) / count for a, b in zip(after, before, strict=True))


def floor_milters(mx) -> tuple[dict[str, tuple[str, int]], list[subprocess.Popen]]:
    """Two milters of tmail's shape that do nothing, for the floor under it:
    libmilter in C (compiled here) and pymilter. {name: (smtpd_milters, pid)}."""
    where = f"{mx.base}/floors"
    os.makedirs(where, mode=0o755)
    subprocess.run(["cc", "-O2", "-o", f"{where}/noop_milter", os.path.join(HERE, "noop_milter.c"),
                    "-lmilter", "-lpthread"], check=True)
    old = os.umask(0)       # sockets smtpd (user postfix) may connect to
    try:
        procs = {"C libmilter no-op": subprocess.Popen([f"{where}/noop_milter", f"unix:{where}/c.sock"]),
                 "pymilter no-op": subprocess.Popen([sys.executable, os.path.join(HERE, "noop_pymilter.py"),
                                                     f"unix:{where}/py.sock"])}
    finally:
        os.umask(old)
    for sock in ("c", "py"):
        wait_until(lambda sock=sock: os.path.exists(f"{where}/{sock}.sock"), what=f"the {sock} no-op milter")
    milters = {name: (f"{{ unix:{where}/{sock}.sock, default_action=tempfail }}", proc.pid)
               for (name, proc), sock in zip(procs.items(), ("c", "py"), strict=True)}
    return milters, list(procs.values())


def big_message(to: str = "fwd@d.test", size: int = 20 * 1024 * 1024) -> bytes:
    # words, runs of spaces and trailing blanks: what relaxed canonicalisation works on
    line = (b"lorem ipsum  dolor\t sit amet, " * 40)[:996] + b"  \n"
    return (b"From: a@orig.test\nTo: " + to.encode() + b"\nSubject: big\n\n"
            + line * (size // len(line)))


def memory(mx, to="fwd@d.test"):
    message = big_message(to)
    daemon_pid = mx.daemon.pid

    def hwm():
        with open(f"/proc/{daemon_pid}/status") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM"))

    before = hwm()
    # The peak RSS a parent sees for a child counts the pages the child
    # shared before its exec (fork, or vfork from this large process). So a
    # tiny wrapper starts tmail-deliver and reports the child's peak itself.
    wrapper = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:]); "
               "_, status, usage = os.wait4(p.pid, 0); "
               "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, file=sys.stderr)")
    proc = subprocess.Popen(["runuser", "-u", "tmail", "--", "/usr/bin/python3", "-c", wrapper,
                             *PIPE_COMMAND, "--socket", f"{mx.run_dir}/deliver.sock", f"BIG{time.monotonic_ns()}",
                             "a@orig.test", to],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(message)
    code, maxrss_kib = err.decode().split()[-2:]
    assert code == "0", out
    return len(message), int(maxrss_kib) * 1024, (hwm() - before) * 1024


# Run as the pipe's user: a command `runs` times on one message, then a
# bare interpreter as often; prints the CPU of each run (ms), from the
# children's rusage (what the kernel charged the processes themselves).
_CPU_WRAPPER = """
import json, resource, subprocess, sys, time
command, runs = json.loads(sys.argv[1]), int(sys.argv[2])
message = sys.stdin.buffer.read()
def cpu():
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime
start = cpu()
for i in range(runs):
    subprocess.run(command + ["CPU%d%d" % (i, time.monotonic_ns()), "a@orig.test", "fwd@d.test"],
                   input=message, stdout=subprocess.DEVNULL, check=True)
middle = cpu()
for _ in range(runs):
    subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", "pass"], check=True)
print(1000 * (middle - start) / runs, 1000 * (cpu() - middle) / runs)
"""


def deliver_cpu(mx, command: list[str], runs: int = 200) -> tuple[float, float]:
    """ms of CPU: `command` delivering one 1 KB message (start-up, reading
    it, handing it over, the daemon's answer), and a bare interpreter's start."""
    message = b"From: a@orig.test\nTo: fwd@d.test\nSubject: cpu\n\n" + b"x" * 1000 + b"\n"
    argv = command + ["--socket", f"{mx.run_dir}/deliver.sock"]
    result = subprocess.run(["runuser", "-u", "tmail", "--", "/usr/bin/python3", "-c", _CPU_WRAPPER,
                             json.dumps(argv), str(runs)], input=message, capture_output=True, check=True)
    deliver, bare = result.stdout.decode().split()
    return float(deliver), float(bare)


def report_pipe_process(mx):
    ours, bare = deliver_cpu(mx, PIPE_COMMAND)
    script, _ = deliver_cpu(mx, [DELIVER])
    print(f"tmail-deliver CPU per 1 KB message (its own process): {ours:.1f} ms as the pipe runs it "
          f"(python -IS deliver.py), {script:.1f} ms as the console script; a bare "
          f"`python3 -I -S -c pass`: {bare:.1f} ms, in the same run")


def use_transport(mx, transport: str) -> None:
    mx.tmail("postfix", "install", "--transport", transport, as_root=True)
    time.sleep(1)      # the reload reaches every Postfix process


def alternating_rates(mx, sink, args, targets: dict) -> dict:
    """msg/s per round for each {name: (alias, destination, transport)}; the
    names take turns within each round, so drift on a noisy machine hits
    all of them. tmail's transport is switched before each of its turns."""
    rates = {name: [] for name in targets}
    cpu = {name: [] for name in targets}
    for _ in range(args.rounds):
        for name, (to, dest, transport) in targets.items():
            if transport:
                use_transport(mx, transport)
            rate, used = forward_rate(mx, sink, args.messages, to, dest)
            rates[name].append(rate)
            cpu[name].append(used)
    print(f"forwarding, {args.messages} x 1 KB messages, {args.rounds} rounds (msg/s per round), "
          "and CPU per forwarded message (ms, the round's median of Postfix's processes + the daemon):")
    for name, values in rates.items():
        postfix = sorted(c[0] for c in cpu[name])[len(cpu[name]) // 2]
        daemon = sorted(c[1] for c in cpu[name])[len(cpu[name]) // 2]
        print(f"  {name:28} {' '.join(f'{v:7.1f}' for v in values)}   best {max(values):7.1f}"
              f"   CPU/msg: Postfix {postfix:5.1f} + daemon {daemon:5.1f} = {postfix + daemon:5.1f} ms")
    return rates


def acceptance_rates(mx, args):
    """Only smtpd's work: outbound delivery is held, then the queue emptied.
    No milter, two do-nothing milters of tmail's shape (the floor any
    libmilter milter costs here) and tmail's take turns in every round, so
    that drift on a noisy machine hits them all."""
    tmail = subprocess.run(["postconf", "-c", mx.conf, "-h", "smtpd_milters"],
                           capture_output=True, text=True).stdout.strip()
    floors, procs = floor_milters(mx)
    variants = {"no milter": ("", None), **floors, "tmail": (tmail, mx.daemon.pid)}
    mx.postconf("defer_transports=relay smtp")
    rates = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    try:
        for _ in range(args.rounds):
            for name, (milters, pid) in variants.items():
                rate, used = acceptance(mx, args.messages, milters, pid)
                rates[name].append(rate)
                cpu[name].append(used)
    finally:
        for proc in procs:
            proc.terminate()
        mx.postconf(f"smtpd_milters={tmail}", "defer_transports=")
        subprocess.run(["postsuper", "-c", mx.conf, "-d", "ALL"], capture_output=True)
        mx.reload()
    print(f"acceptance of other mail, {args.messages} x 1 KB messages, {args.rounds} rounds (msg/s per round);"
          " each round's rate over the same round's without a milter (their median: the rounds"
          " drift less than the best of each), and CPU per accepted message (the rounds' medians):")
    for name, values in rates.items():
        ratios = sorted(a / b for a, b in zip(values, rates["no milter"], strict=True))
        postfix = sorted(c[0] for c in cpu[name])[len(cpu[name]) // 2]
        milter = sorted(c[1] for c in cpu[name])[len(cpu[name]) // 2]
        print(f"  {name:18} {' '.join(f'{v:7.1f}' for v in values)}   x{ratios[len(ratios) // 2]:.2f}"
              f"   CPU/msg: Postfix {postfix:.2f} + milter {milter:.2f} ms")
    print("  (target for tmail: >= 0.9x)")


def report_memory(mx):
    size, pipe_rss, daemon_growth = memory(mx)
    print(f"20 MB message ({size / 2**20:.1f} MiB): tmail-deliver peak RSS {pipe_rss / 2**20:.1f} MiB"
          f" ({pipe_rss / size:.2f}x the message; target <= 3x); daemon peak grew by "
          f"{daemon_growth / 2**20:.1f} MiB")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", choices=["forwarding", "acceptance", "memory", "pipe"])
    args = parser.parse_args()
    sink = SmtpSink()
    # The daemon logs at the default level, info (the tests' harness says debug).
    mx = Instance(sink.port, config={"daemon": {"log_level": "info"}})
    sink.mx = mx
    # Answers live 5 minutes, as senders' SPF and DMARC records commonly do
    # (the tests' zone says 0, to change it at will); every message here
    # comes from one sender domain, so tmail's DNS cache answers nearly all.
    mx.zone.ttl = 300
    try:
        mx.setup()
        setup_baselines(mx)
        if args.only in (None, "forwarding"):
            rates = alternating_rates(mx, sink, args, {
                "native virtual_alias_maps": ("fwd@native.test", "native-dest@real.test", None),
                "minimal stdlib pipe": ("fwd@minimal.test", "minimal-dest@real.test", None),
                "tmail pipe": ("fwd@d.test", "tmail-dest@real.test", "pipe"),
                "tmail lmtp": ("fwd@d.test", "tmail-dest@real.test", "lmtp")})
            native = max(rates["native virtual_alias_maps"])
            for name in ("tmail pipe", "tmail lmtp"):
                print(f"  {name} / native = {max(rates[name]) / native:.2f}x, "
                      f"/ minimal pipe = {max(rates[name]) / max(rates['minimal stdlib pipe']):.2f}x")
            use_transport(mx, "pipe")
        if args.only in (None, "acceptance"):
            acceptance_rates(mx, args)
        if args.only in (None, "memory"):
            report_memory(mx)
        if args.only in (None, "pipe"):
            report_pipe_process(mx)
    finally:
        mx.teardown()
        sink.close()


if __name__ == "__main__":
    main()
