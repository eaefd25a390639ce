"""The mail the web app sends itself (verification, password and sign-up
links), built by tmail.core.mails and handed to `send` (tmail.outbound.send
by default: signed, through Postfix's reinjection listener; tests pass a
recorder).

Links are built from [web] base_url, never from the request's Host field,
so nobody can make tmail mail out a link to their own site.
"""
from __future__ import annotations

import logging
import socket
import threading

from flask import current_app, request, url_for

log = logging.getLogger("tmail.web")


def link(endpoint: str, **values) -> str:
    """An absolute link for a mail: the base URL and the route's path."""
    path = url_for(endpoint, **values)
    root = request.script_root
    if root and path.startswith(root):
        path = path[len(root):]
    return current_app.extensions["tmail"].config.base_url + path


def send(to: str, build, **fields) -> bool:
    """Build a message with `build(sender=..., to=..., now=..., host=...,
    **fields)` and send it; False (logged) when it could not be handed over:
    the page then says so, and the person can try again."""
    state = current_app.extensions["tmail"]
    message = _build(state, to, build, fields)
    try:
        state.send(state.config, [to], message)
    except Exception:   # the mail system is down or refused it: said on the page
        log.exception("could not send %s to %s", build.__name__, to)
        return False
    return True


def send_later(to: str, build, **fields) -> None:
    """Send after the answer: for pages whose answer must not tell whether
    a mail went out (password reset, sign-up): sending takes time an
    attacker could measure to learn which accounts exist."""
    state = current_app.extensions["tmail"]
    message = _build(state, to, build, fields)

    def deliver():
        try:
            state.send(state.config, [to], message)
        except Exception:
            log.exception("could not send %s to %s", build.__name__, to)
    if state.send_in_background:
        threading.Thread(target=deliver, name="tmail-mail", daemon=True).start()
    else:                # tests: at once, so the outbox can be read
        deliver()


def _build(state, to: str, build, fields) -> bytes:
    cfg = state.config
    return build(sender=cfg.notice_from, to=to, now=state.now(),
                 host=cfg["srs"]["domain"] or socket.getfqdn(), **fields)
