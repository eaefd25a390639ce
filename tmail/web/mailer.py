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
    cfg = state.config
    message = build(sender=cfg.notice_from, to=to, now=state.now(),
                    host=cfg["srs"]["domain"] or socket.getfqdn(), **fields)
    try:
        state.send(cfg, [to], message)
    except Exception:   # the mail system is down or refused it: said on the page
        log.exception("could not send %s to %s", build.__name__, to)
        return False
    return True
