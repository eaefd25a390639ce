#!/usr/bin/env bash
# Install and run tmail on a Debian host (idempotent: running it again
# changes nothing). As root:   ./install.sh
#
#   TMAIL_SRS_DOMAIN   the domain SRS addresses use (default: srs.$(hostname -f))
#   TMAIL_ADMIN        where postmaster@ each tmail domain goes (default root@localhost)
#   --deps-only        only the system packages, the tmail user and groups
#                      (what the test suite needs; used by tests/run)
set -euo pipefail

PREFIX=/opt/tmail
ETC=/etc/tmail
LIB=/var/lib/tmail
LOG=/var/log/tmail
SPOOL=/var/spool/postfix/tmail
SRC=$(cd "$(dirname "$0")" && pwd)
say() { printf 'tmail-install: %s\n' "$*"; }

[ "$(id -u)" = 0 ] || { echo "tmail-install: run as root" >&2; exit 1; }

# 1. System packages (postfix only if absent: an existing setup is kept).
need=()
for pkg in postfix libmilter-dev python3-venv python3-dev gcc swaks; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

# 2. The tmail user; postfix joins its group to reach the milter socket.
if ! id tmail >/dev/null 2>&1; then
  say "creating the tmail user"
  adduser --system --group --home "$LIB" --no-create-home --shell /usr/sbin/nologin tmail >/dev/null
fi
id -nG postfix | grep -qw tmail || usermod -aG tmail postfix

[ "${1:-}" = "--deps-only" ] && exit 0

# 3. A virtualenv from Debian's Python (the tmail user must be able to run it).
stamp=$(cd "$SRC" && find setup.cfg pyproject.toml tmail -type f -not -path '*/__pycache__/*' -print0 \
        | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
if [ ! -x "$PREFIX/venv/bin/tmail" ] || [ "$(cat "$PREFIX/.installed" 2>/dev/null)" != "$stamp" ]; then
  say "installing tmail into $PREFIX/venv"
  [ -x "$PREFIX/venv/bin/python" ] || /usr/bin/python3 -m venv "$PREFIX/venv"
  "$PREFIX/venv/bin/pip" install -q --upgrade pip >/dev/null
  "$PREFIX/venv/bin/pip" install -q "$SRC"
  echo "$stamp" > "$PREFIX/.installed"
  changed_code=1
fi
chmod -R a+rX "$PREFIX"

# 4. Directories, configuration, SRS secret, database.
install -d -m 0750 -o root -g tmail "$ETC"
install -d -m 0700 -o tmail -g tmail "$LIB"
install -d -m 0750 -o tmail -g tmail "$LOG" /run/tmail "$SPOOL"
install -d -m 0755 /etc/postfix/tmail
if [ ! -f "$ETC/tmail.toml" ]; then
  srs=${TMAIL_SRS_DOMAIN:-srs.$(hostname -f 2>/dev/null || hostname)}
  "$PREFIX/venv/bin/tmail" --config "$ETC/tmail.toml" init --owner tmail \
      --srs-domain "$srs" --admin "${TMAIL_ADMIN:-root@localhost}" >/dev/null
  printf '\n[postfix]\nmap_directory = "/etc/postfix/tmail"\n' >> "$ETC/tmail.toml"
  chgrp tmail "$ETC/tmail.toml"
  say "created $ETC/tmail.toml (SRS domain $srs)"
fi
runuser -u tmail -- "$PREFIX/venv/bin/tmail" --config "$ETC/tmail.toml" db upgrade >/dev/null
# DKIM: the SRS domain signs relayed bounces and notices; a key for it, once.
install -d -m 0750 -o tmail -g tmail "$ETC/dkim"
srs=$(/usr/bin/python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb")).get("srs", {}).get("domain", ""))' "$ETC/tmail.toml")
if [ -n "$srs" ] && ! "$PREFIX/venv/bin/tmail" --config "$ETC/tmail.toml" dkim show-dns --domain "$srs" >/dev/null 2>&1; then
  "$PREFIX/venv/bin/tmail" --config "$ETC/tmail.toml" dkim keygen --domain "$srs" --selector s1 >/dev/null
  say "created DKIM keys for $srs; publish: tmail dkim show-dns; then check: tmail doctor"
fi
ln -sf "$PREFIX/venv/bin/tmail" /usr/local/bin/tmail

# 5. Postfix: running, then wired (install is idempotent).
postfix status >/dev/null 2>&1 || postfix start >/dev/null 2>&1 || true
"$PREFIX/venv/bin/tmail" --config "$ETC/tmail.toml" postfix install | sed 's/^/tmail-install: /'

# 6. The daemon: under systemd where it runs, else a plain background daemon.
if [ -d /run/systemd/system ]; then
  for unit in tmail.service tmail-maintenance.service tmail-maintenance.timer; do
    install -m 0644 "$SRC/systemd/$unit" "/etc/systemd/system/$unit"
  done
  systemctl daemon-reload
  systemctl enable -q tmail tmail-maintenance.timer
  systemctl start tmail-maintenance.timer
  if [ -n "${changed_code:-}" ]; then systemctl restart tmail; else systemctl start tmail; fi
else
  pidfile=/run/tmail/tmail.pid
  running=""
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && running=1
  if [ -n "$running" ] && [ -n "${changed_code:-}" ]; then
    kill "$(cat "$pidfile")"; sleep 1; running=""
  fi
  if [ -z "$running" ]; then
    runuser -u tmail -- sh -c "cd / && nohup $PREFIX/venv/bin/tmail --config $ETC/tmail.toml daemon \
        --log-file $LOG/tmail.log >/dev/null 2>&1 & echo \$! > $pidfile"
    say "started the tmail daemon (pid $(cat $pidfile)); log: $LOG/tmail.log"
  fi
  # Without systemd, cron runs the daily upkeep.
  if [ -d /etc/cron.d ] && [ ! -f /etc/cron.d/tmail ]; then
    printf '%s\n' "17 4 * * * tmail $PREFIX/venv/bin/tmail --config $ETC/tmail.toml purge && $PREFIX/venv/bin/tmail --config $ETC/tmail.toml notify" > /etc/cron.d/tmail
  fi
fi
say "done. Check it: tmail postfix check"
