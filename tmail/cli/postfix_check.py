"""tmail postfix check: what is missing or wrong between Postfix and tmail."""
from __future__ import annotations

import grp
import os
import pwd
import socket
import stat

import click

from .. import postfix_wiring as wiring
from .app import json_option, pass_app, printable


def _connects(path: str) -> tuple[bool, str]:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(path)
        return True, path
    except OSError as exc:
        return False, f"{path}: {exc.strerror or exc}"
    finally:
        probe.close()


def _user(name: str):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _groups(user) -> set[int]:
    """Every group id a user's processes run with (primary and supplementary)."""
    return {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem}


def _name(lookup, ident: int) -> str:
    try:
        return lookup(ident)[0]
    except KeyError:
        return str(ident)


def _readable_by(info: os.stat_result, user, groups: set[int]) -> bool:
    if info.st_uid == user.pw_uid:
        return bool(info.st_mode & stat.S_IRUSR)
    if info.st_gid in groups:
        return bool(info.st_mode & stat.S_IRGRP)
    return bool(info.st_mode & stat.S_IROTH)


def _socket_directory(path: str, user) -> tuple[bool, str]:
    """tmail owns it, Postfix reaches it through tmail-postfix alone, and
    setgid hands that group to the sockets the daemon makes in it."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return False, f"{path}: {exc.strerror}"
    try:
        gid = grp.getgrnam(wiring.SOCKET_GROUP).gr_gid
    except KeyError:
        return False, f"no group {wiring.SOCKET_GROUP} (run install.sh)"
    mode = stat.S_IMODE(info.st_mode)
    ok = (user is not None and info.st_uid == user.pw_uid and info.st_gid == gid
          and mode == wiring.SOCKET_DIR_MODE)
    detail = (f"{path}: {_name(pwd.getpwuid, info.st_uid)}:{_name(grp.getgrgid, info.st_gid)} "
              f"mode {mode:04o}")
    if not ok:
        owner = user.pw_name if user else "tmail"
        detail += f" (want {owner}:{wiring.SOCKET_GROUP} mode {wiring.SOCKET_DIR_MODE:04o})"
    return ok, detail


@click.command("check")
@json_option
@pass_app
def check(app):
    """Report what is missing or wrong between Postfix and tmail."""
    from ..db.engine import sqlite_path
    from ..mailpath import milter_probe
    from ..mailpath.daemon import socket_path
    from .fleet import fleet_problems
    from .postfix import Postconf, current_state, routed_domains, table_is_current
    cfg = app.config
    postconf = Postconf(cfg["postfix"]["config_directory"])
    results = []

    def report(name, ok, detail):
        results.append({"check": name, "ok": bool(ok), "detail": detail})

    main, master, _defaults = current_state(cfg, postconf)
    transport = wiring.transport_of(master)
    report("transport", True, f"{transport} (tmail postfix install --transport lmtp|pipe)")
    try:
        missing = wiring.install_changes(cfg, main, master)
        report("postfix settings", not missing,
               "all present" if not missing else "; ".join(map(str, missing)))
    except wiring.Conflict as exc:
        report("postfix settings", False, str(exc))
    report("milter socket", *milter_probe.check(socket_path(cfg, "milter_socket")))
    for label, path in (("policy guard socket", socket_path(cfg, "policy_socket")),
                        ("delivery socket", cfg["daemon"]["deliver_socket"]),
                        ("lmtp socket", wiring.lmtp_socket(cfg))):
        report(label, *_connects(path))
    host, port = cfg["daemon"]["reinject_host"], cfg["daemon"]["reinject_port"]
    try:
        with socket.create_connection((host, port), timeout=3) as conn:
            banner = conn.recv(512).decode("ascii", "replace").strip()
        report("reinjection listener", banner.startswith("220"), f"{host}:{port}: {banner[:60]}")
    except OSError as exc:
        report("reinjection listener", False, f"{host}:{port}: {exc.strerror or exc}")
    user = cfg["postfix"]["pipe_user"]
    pw = _user(user)
    report("pipe user", pw is not None and pw.pw_uid != 0,
           f"{user} (uid {pw.pw_uid})" if pw else f"no user {user}")
    command = wiring.deliver_command(cfg)
    program, *args = command.split()
    report("deliver command", os.access(program, os.X_OK) and all(
        os.access(a, os.R_OK) for a in args if a.startswith("/")), command)
    with app.store() as store:
        domains = store.domain_names()
    directory = cfg["postfix"]["map_directory"]
    routed = routed_domains(cfg, domains, postconf.own_domains())
    stale = [name for name, content in wiring.map_files(routed, nexthop=wiring.nexthop(cfg, transport)).items()
             if not table_is_current(os.path.join(directory, name), name, content)]
    report("lookup tables", directory and not stale,
           "up to date" if directory and not stale
           else f"run `tmail postfix sync` ({', '.join(stale) or 'no map_directory'})")

    # Who may reach what: the postfix user reaches the milter and guard
    # sockets through tmail-postfix, and nothing of tmail's besides.
    for directory in sorted({os.path.dirname(socket_path(cfg, k))
                             for k in ("milter_socket", "policy_socket", "lmtp_socket")}):
        report("socket directory", *_socket_directory(directory, pw))
    owner = postconf.value("mail_owner") or "postfix"
    postfix_pw = _user(owner)
    postfix_groups = _groups(postfix_pw) if postfix_pw else set()
    if pw is not None and postfix_pw is not None:
        tmail_group = _name(grp.getgrgid, pw.pw_gid)
        shared = pw.pw_gid in postfix_groups
        report("postfix user's groups", not shared,
               f"{owner} is in group {tmail_group}: remove it (gpasswd -d {owner} {tmail_group})"
               if shared else f"{owner} is not in group {tmail_group}")
    try:
        info = os.stat(cfg.path)
        mode = stat.S_IMODE(info.st_mode)
        to_postfix = postfix_pw is not None and _readable_by(info, postfix_pw, postfix_groups)
        report("configuration file", not mode & stat.S_IROTH and not to_postfix,
               f"{cfg.path} mode {mode:04o}"
               + (", world-readable" if mode & stat.S_IROTH else "")
               + (f", readable by {owner}" if to_postfix else ""))
    except OSError as exc:
        report("configuration file", False, f"{cfg.path}: {exc.strerror}")
    secret_file = cfg["srs"]["secret_file"]
    # in a fleet the file's secret still verifies until rotated out: checked while it exists
    for label, path in (("SRS secret file", secret_file if not cfg.fleet or os.path.exists(secret_file) else None),
                        ("fleet key file", cfg["fleet"]["key_file"]),
                        ("database file", sqlite_path(cfg["database"]["url"]))):
        if not path:
            continue
        try:
            info = os.stat(path)
            private = stat.S_IMODE(info.st_mode) & 0o077 == 0
            owned = pw is None or info.st_uid == pw.pw_uid
            report(label, private and owned,
                   f"{path} mode {stat.S_IMODE(info.st_mode):04o}"
                   + ("" if owned else f", not owned by {user}"))
        except OSError as exc:
            report(label, False, f"{path}: {exc.strerror}")
    # Several hosts on this database: do they all follow it alike?
    problems = fleet_problems(app)
    report("fleet", not problems,
           printable("; ".join(problems)) or "every host agrees (or this one is alone)")
    ok = all(r["ok"] for r in results)
    app.emit({"ok": ok, "checks": results},
             "\n".join(f"[{'ok' if r['ok'] else 'FAIL'}] {r['check']}: {r['detail']}" for r in results))
    if not ok:
        raise SystemExit(1)
