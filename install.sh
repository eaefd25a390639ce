#!/usr/bin/env bash
# Install and run tmail on a Debian host. As root:   ./install.sh
#
# It converges: every run brings users, groups, files, owners and modes to
# what is written here, and a second run changes nothing. It ends with the
# daemon answering on its sockets and the web app (tmail web) on [web] listen,
# or fails loudly with their error. nginx is not installed: the example
# server block for it is nginx/tmail-web.conf (copied to /opt/tmail/nginx/).
#
#   TMAIL_SRS_DOMAIN   the domain SRS addresses use (default: srs.$(hostname -f))
#   TMAIL_ADMIN        where postmaster@ each tmail domain goes (default root@localhost)
#   --deps-only        only the system packages, the tmail user and groups
#                      (what the test suite needs, its browser, chromium,
#                      too; used by tests/run)
set -euo pipefail

PREFIX=/opt/tmail
ETC=/etc/tmail
CONFIG=$ETC/tmail.toml
LIB=/var/lib/tmail
LOG=/var/log/tmail
RUN=/run/tmail
# The group through which Postfix reaches the milter and guard sockets, and
# nothing else of tmail's (not tmail.toml, not the delivery socket).
SOCKET_GROUP=tmail-postfix
SRC=$(cd "$(dirname "$0")" && pwd)
TMAIL=$PREFIX/venv/bin/tmail
say() { printf 'tmail-install: %s\n' "$*"; }
die() { printf 'tmail-install: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"

# 1. System packages (postfix only if absent: an existing setup is kept).
#    The tests drive Debian's chromium with Playwright (whose own browser
#    download cannot work offline); a server needs no browser.
packages=(postfix libmilter-dev python3-venv python3-dev gcc swaks)
[ "${1:-}" = "--deps-only" ] && packages+=(chromium fonts-dejavu-core)
need=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

# 2. Users and groups. The postfix user (Postfix's mail_owner) joins
#    tmail-postfix and leaves tmail: in the tmail group, anything running as
#    postfix could read tmail.toml (a database password) and hand the
#    delivery socket a message for a disabled alias.
in_group() { id -nG "$1" 2>/dev/null | tr ' ' '\n' | grep -qx "$2"; }
if ! id tmail >/dev/null 2>&1; then
  say "creating the tmail user"
  adduser --system --group --home "$LIB" --no-create-home --shell /usr/sbin/nologin tmail >/dev/null
fi
if ! getent group "$SOCKET_GROUP" >/dev/null; then
  say "creating the $SOCKET_GROUP group"
  addgroup --system "$SOCKET_GROUP" >/dev/null
fi
mail_owner=$(postconf -h mail_owner 2>/dev/null || echo postfix)
if ! in_group "$mail_owner" "$SOCKET_GROUP"; then
  say "adding $mail_owner to the $SOCKET_GROUP group"
  usermod -aG "$SOCKET_GROUP" "$mail_owner"
fi
if in_group "$mail_owner" tmail; then
  say "removing $mail_owner from the tmail group"
  gpasswd -d "$mail_owner" tmail >/dev/null
fi

[ "${1:-}" = "--deps-only" ] && exit 0

# 3. A virtualenv from Debian's Python (the tmail user must be able to run it).
stamp=$(cd "$SRC" && find setup.cfg pyproject.toml tmail -type f -not -path '*/__pycache__/*' -print0 \
        | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
changed_code=""
if [ ! -x "$TMAIL" ] || [ "$(cat "$PREFIX/.installed" 2>/dev/null)" != "$stamp" ]; then
  say "installing tmail into $PREFIX/venv"
  [ -x "$PREFIX/venv/bin/python" ] || /usr/bin/python3 -m venv "$PREFIX/venv"
  "$PREFIX/venv/bin/pip" install -q --upgrade pip >/dev/null
  "$PREFIX/venv/bin/pip" install -q "$SRC"
  echo "$stamp" > "$PREFIX/.installed"
  changed_code=1
fi
chmod -R a+rX "$PREFIX"
ln -sf "$TMAIL" /usr/local/bin/tmail

# converge MODE OWNER:GROUP PATH...: those that exist get exactly this owner
# and mode (five digits, so a directory's setgid bit is set or cleared too);
# each fix is reported.
converge() {
  local mode=$1 owner=$2 path before after
  shift 2
  for path in "$@"; do
    [ -e "$path" ] || continue
    before=$(stat -c '%U:%G %04a' "$path")
    chown "$owner" "$path"
    chmod "$mode" "$path"
    after=$(stat -c '%U:%G %04a' "$path")
    [ "$before" = "$after" ] || say "fixed $path: $before -> $after"
  done
}
# directory MODE OWNER:GROUP PATH...: made if missing (not install -d, which
# would reset the mode of one that exists), then converged.
directory() {
  local mode=$1 owner=$2 path
  shift 2
  for path in "$@"; do
    if [ ! -d "$path" ]; then mkdir -p "$path" && chown "$owner" "$path" && chmod "$mode" "$path"; fi
  done
  converge "$mode" "$owner" "$@"
}

# 4. Configuration, SRS secret, database: created when missing, never
#    replaced; the paths come from the configuration itself.
directory 00750 root:tmail "$ETC"
directory 00700 tmail:tmail "$LIB"    # the tmail user's home: the database, statistics
if [ ! -f "$CONFIG" ]; then
  srs=${TMAIL_SRS_DOMAIN:-srs.$(hostname -f 2>/dev/null || hostname)}
  "$TMAIL" --config "$CONFIG" init --owner tmail \
      --srs-domain "$srs" --admin "${TMAIL_ADMIN:-root@localhost}" >/dev/null
  printf '\n[postfix]\nmap_directory = "/etc/postfix/tmail"\n' >> "$CONFIG"
  say "created $CONFIG (SRS domain $srs)"
fi
converge 00640 root:tmail "$CONFIG"
paths=$("$PREFIX/venv/bin/python" - "$CONFIG" <<'PY'
import shlex, sys
from tmail.config import ConfigError, load
from tmail.db.engine import sqlite_path
from tmail.mailpath.daemon import socket_path
try:
    cfg = load(sys.argv[1])
except ConfigError as exc:
    sys.exit(f"tmail-install: error: {exc}")
for name, value in (("SECRET", cfg["srs"]["secret_file"]), ("SRS", cfg["srs"]["domain"]),
                    ("DB_FILE", sqlite_path(cfg["database"]["url"])),
                    ("KEYS", cfg["dkim"]["key_directory"]), ("MAPS", cfg["postfix"]["map_directory"]),
                    ("MILTER", socket_path(cfg, "milter_socket")),
                    ("POLICY", socket_path(cfg, "policy_socket")),
                    ("DELIVER", cfg["daemon"]["deliver_socket"]),
                    ("WEB_SECRET", cfg["web"]["secret_key_file"]), ("WEB_LISTEN", cfg["web"]["listen"])):
    print(f"{name}={shlex.quote(value or '')}")
PY
) || exit 1
eval "$paths"
# init again: a secret or database that went missing is made (owned by
# tmail), the schema is upgraded; what exists is kept.
"$TMAIL" --config "$CONFIG" init --owner tmail --json \
  | /usr/bin/python3 -c 'import json, sys; [print(f"tmail-install: created {p}") for p in json.load(sys.stdin).get("created", [])]'
# DKIM: the SRS domain signs relayed bounces and notices; a key for it, once.
directory 00750 tmail:tmail "$KEYS"
if [ -n "$SRS" ] && ! "$TMAIL" --config "$CONFIG" dkim show-dns --domain "$SRS" >/dev/null 2>&1; then
  "$TMAIL" --config "$CONFIG" dkim keygen --domain "$SRS" --selector s1 >/dev/null
  say "created DKIM keys for $SRS; publish: tmail dkim show-dns; then check: tmail doctor"
fi

# 5. Owners and modes of everything above, every run.
converge 00600 tmail:tmail "$SECRET" "$WEB_SECRET"
if [ -n "$DB_FILE" ]; then
  converge 00600 tmail:tmail "$DB_FILE" "$DB_FILE-wal" "$DB_FILE-shm"
fi
find "$KEYS" -type d -print0 | while IFS= read -r -d '' path; do converge 00750 tmail:tmail "$path"; done
find "$KEYS" -type f -print0 | while IFS= read -r -d '' path; do
  case $path in */active) converge 00640 tmail:tmail "$path" ;; *) converge 00600 tmail:tmail "$path" ;; esac
done
directory 00750 tmail:tmail "$LOG" "$RUN"
converge 00640 tmail:tmail "$LOG/tmail.log" "$LOG/tmail.stderr" "$LOG/web.log" "$LOG/web.stderr"
# The sockets' directory: setgid, so the sockets the daemon makes get the
# group that Postfix's smtpd is in. Sockets an older daemon left with
# another group get this one (their modes are the daemon's business).
directory 02750 "tmail:$SOCKET_GROUP" "$(dirname "$MILTER")" "$(dirname "$POLICY")"
for sock in "$MILTER" "$POLICY"; do
  if [ -S "$sock" ]; then converge "0$(stat -c %a "$sock")" "tmail:$SOCKET_GROUP" "$sock"; fi
done
if [ -n "$MAPS" ]; then directory 00755 root:root "$MAPS"; fi

# 6. Postfix: running, then wired (install is idempotent).
postfix status >/dev/null 2>&1 || postfix start >/dev/null 2>&1 || true
"$TMAIL" --config "$CONFIG" postfix install | sed 's/^/tmail-install: /'

# answering SECONDS PID: wait until the three sockets accept connections;
# 0 when they do, 1 on time-out, 2 once process PID (if not 0) is gone.
answering() {
  /usr/bin/python3 - "$1" "$2" "$MILTER" "$POLICY" "$DELIVER" <<'PY'
import socket, sys, time
timeout, pid, paths = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
def alive():
    try:  # a zombie has exited too (nothing may reap it here)
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
def connects(path):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(1)
        try:
            s.connect(path)
            return True
        except OSError:
            return False
deadline = time.monotonic() + timeout
while True:
    if all(connects(p) for p in paths):
        sys.exit(0)
    if pid and not alive():
        sys.exit(2)
    if time.monotonic() > deadline:
        sys.exit(1)
    time.sleep(0.2)
PY
}

# 7. The daemon: under systemd where it runs, else a plain background daemon.
if [ -d /run/systemd/system ]; then
  reload=""
  for unit in tmail.service tmail-follow.service tmail-maintenance.service tmail-maintenance.timer; do
    if ! cmp -s "$SRC/systemd/$unit" "/etc/systemd/system/$unit"; then
      install -m 0644 "$SRC/systemd/$unit" "/etc/systemd/system/$unit"
      reload=1
    fi
  done
  [ -z "$reload" ] || systemctl daemon-reload
  systemctl enable -q tmail tmail-follow tmail-maintenance.timer
  systemctl start tmail-maintenance.timer
  if [ -n "$changed_code$reload" ]; then systemctl restart tmail-follow; else systemctl start tmail-follow; fi
  # (Re)started when the code or a unit changed, or when it does not answer.
  if [ -n "$changed_code$reload" ] || ! answering 1 0; then systemctl restart tmail; fi
  if ! answering 20 0; then
    printf 'tmail-install: error: the tmail daemon does not answer on its sockets (%s, %s, %s); its journal:\n' \
      "$MILTER" "$POLICY" "$DELIVER" >&2
    journalctl -u tmail -n 20 --no-pager >&2 || true
    exit 1
  fi
  say "the tmail daemon answers (systemd unit tmail); log: journalctl -u tmail"
else
  pidfile=$RUN/tmail.pid
  alive() { tr -d '\0' 2>/dev/null < "/proc/$1/cmdline" | grep -q .; }  # a zombie has no cmdline
  stop() {
    kill "$1" 2>/dev/null || return 0
    for _ in $(seq 50); do alive "$1" || return 0; sleep 0.2; done
    kill -9 "$1" 2>/dev/null || true
  }
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if [ -z "$pid" ] || ! tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -q "tmail.* daemon"; then
    pid=""
  elif [ -n "$changed_code" ] || ! answering 3 "$pid"; then
    say "restarting the tmail daemon (pid $pid)"
    stop "$pid"
    pid=""
  fi
  if [ -z "$pid" ]; then
    logged=$(stat -c %s "$LOG/tmail.log" 2>/dev/null || echo 0)
    # stderr to a file, not /dev/null: what the daemon says before its
    # log is open (a bad --log-file, an import error) must be kept.
    runuser -u tmail -- sh -c 'cd / && umask 027 && exec nohup "$0" --config "$1" daemon --log-file "$2" \
        </dev/null >"$3" 2>&1 & echo $! > "$4"' "$TMAIL" "$CONFIG" "$LOG/tmail.log" "$LOG/tmail.stderr" "$pidfile"
    pid=$(cat "$pidfile")
    status=0
    answering 20 "$pid" || status=$?
    if [ "$status" != 0 ]; then
      if [ "$status" = 2 ]; then what="exited"; else what="did not answer on its sockets within 20 s"; stop "$pid"; fi
      {
        echo "tmail-install: error: the tmail daemon (pid $pid) $what; it said:"
        tail -c +$((logged + 1)) "$LOG/tmail.log" 2>/dev/null | tail -n 20 | sed 's/^/  /'
        tail -n 20 "$LOG/tmail.stderr" 2>/dev/null | sed 's/^/  /'
      } >&2
      exit 1
    fi
    say "started the tmail daemon (pid $pid); log: $LOG/tmail.log"
  fi
  # Without systemd, cron runs the daily upkeep (what tmail-maintenance does).
  if [ -d /etc/cron.d ]; then
    line="17 4 * * * tmail $TMAIL --config $CONFIG purge && $TMAIL --config $CONFIG notify && $TMAIL --config $CONFIG stats --prometheus $LIB/tmail.prom"
    if [ "$(cat /etc/cron.d/tmail 2>/dev/null)" != "$line" ]; then
      printf '%s\n' "$line" > /etc/cron.d/tmail
      say "wrote /etc/cron.d/tmail"
    fi
  fi
fi

# web_answering SECONDS PID: wait until the web app answers an HTTP request
# on [web] listen with a status below 500; 0 when it does, 1 on time-out,
# 2 once process PID (if not 0) is gone. (A connect alone proves nothing:
# gunicorn's master accepts before any worker has loaded the app.)
web_answering() {
  /usr/bin/python3 - "$1" "$2" "$WEB_LISTEN" <<'PY'
import socket, sys, time
timeout, pid, listen = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def alive():
    try:  # a zombie has exited too (nothing may reap it here)
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
def answers():
    if listen.startswith("unix:"):
        family, addr = socket.AF_UNIX, listen[5:]
    else:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        family, addr = (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, int(port))
    with socket.socket(family) as s:
        s.settimeout(5)
        try:
            s.connect(addr)
            s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            status = s.recv(64).split(b" ", 2)
        except OSError:
            return False
    return len(status) > 1 and status[0].startswith(b"HTTP/1.") and status[1][:1] in (b"1", b"2", b"3", b"4")
deadline = time.monotonic() + timeout
while True:
    if answers():
        sys.exit(0)
    if pid and not alive():
        sys.exit(2)
    if time.monotonic() > deadline:
        sys.exit(1)
    time.sleep(0.2)
PY
}

# 7b. The web app (tmail web, gunicorn on [web] listen), like the daemon.
#     nginx in front of it is the admin's: the example server block is
#     copied beside the code.
if ! cmp -s "$SRC/nginx/tmail-web.conf" "$PREFIX/nginx/tmail-web.conf"; then
  install -D -m 0644 "$SRC/nginx/tmail-web.conf" "$PREFIX/nginx/tmail-web.conf"
  say "wrote $PREFIX/nginx/tmail-web.conf, an nginx server block for the web app (TLS, Let's Encrypt)"
fi
if [ -d /run/systemd/system ]; then
  web_reload=""
  if ! cmp -s "$SRC/systemd/tmail-web.service" /etc/systemd/system/tmail-web.service; then
    install -m 0644 "$SRC/systemd/tmail-web.service" /etc/systemd/system/tmail-web.service
    systemctl daemon-reload
    web_reload=1
  fi
  systemctl enable -q tmail-web
  if [ -n "$changed_code$web_reload" ] || ! web_answering 1 0; then systemctl restart tmail-web; fi
  if ! web_answering 20 0; then
    printf 'tmail-install: error: the tmail web app does not answer on %s; its journal:\n' "$WEB_LISTEN" >&2
    journalctl -u tmail-web -n 30 --no-pager >&2 || true
    exit 1
  fi
  say "the tmail web app answers on $WEB_LISTEN (systemd unit tmail-web); log: journalctl -u tmail-web"
else
  web_pidfile=$RUN/web.pid
  web_pid=$(cat "$web_pidfile" 2>/dev/null || true)
  if [ -z "$web_pid" ] || ! tr '\0' ' ' 2>/dev/null < "/proc/$web_pid/cmdline" | grep -q "tmail.* web --log-file"; then
    web_pid=""
  elif [ -n "$changed_code" ] || ! web_answering 3 "$web_pid"; then
    say "restarting the tmail web app (pid $web_pid)"
    stop "$web_pid"
    web_pid=""
  fi
  if [ -z "$web_pid" ]; then
    logged=$(stat -c %s "$LOG/web.log" 2>/dev/null || echo 0)
    runuser -u tmail -- sh -c 'cd / && umask 027 && exec nohup "$0" --config "$1" web --log-file "$2" \
        </dev/null >"$3" 2>&1 & echo $! > "$4"' "$TMAIL" "$CONFIG" "$LOG/web.log" "$LOG/web.stderr" "$web_pidfile"
    web_pid=$(cat "$web_pidfile")
    status=0
    web_answering 20 "$web_pid" || status=$?
    if [ "$status" != 0 ]; then
      if [ "$status" = 2 ]; then what="exited"; else what="did not answer on $WEB_LISTEN within 20 s"; stop "$web_pid"; fi
      {
        echo "tmail-install: error: the tmail web app (pid $web_pid) $what; it said:"
        tail -c +$((logged + 1)) "$LOG/web.log" 2>/dev/null | tail -n 30 | sed 's/^/  /'
        tail -n 20 "$LOG/web.stderr" 2>/dev/null | sed 's/^/  /'
      } >&2
      exit 1
    fi
    say "started the tmail web app (pid $web_pid) on $WEB_LISTEN; log: $LOG/web.log"
  fi
fi
converge 00640 tmail:tmail "$LOG/web.log" "$LOG/web.stderr"

# 8. The whole picture, as an admin would check it.
if ! "$TMAIL" --config "$CONFIG" postfix check >/dev/null; then
  "$TMAIL" --config "$CONFIG" postfix check | grep -v '^\[ok\]' | sed 's/^/tmail-install: /' >&2 || true
  die "tmail postfix check found problems (above)"
fi
say "done; tmail postfix check passes"
