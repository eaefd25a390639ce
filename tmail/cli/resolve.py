"""tmail resolve: what tmail would answer for a recipient now, and why."""
from __future__ import annotations

import click

from .. import config as config_mod
from ..core.durations import utcnow
from ..core.replies import reply_for
from ..core.resolve import resolve as resolve_verdict
from .app import json_option, pass_app


@click.command("resolve")
@click.argument("address")
@click.option("--from", "sender", default="", metavar="SENDER",
              help="The envelope sender (default: the null sender <>).")
@json_option
@pass_app
def resolve(app, address, sender):
    """Show the verdict the milter would give ADDRESS now, and why."""
    policy = config_mod.policy(app.config)
    now = utcnow()
    with app.store() as store:
        verdict = resolve_verdict(store, policy, address, sender, now)
    reply = reply_for(verdict)
    answer = "accept" if reply is None else str(reply)
    if verdict.drop:
        answer = "accept, then discard (expired alias in drop mode)"
    data = {"ok": True, "recipient": address, "sender": sender or "<>",
            "verdict": verdict.kind.value, "reason": verdict.reason,
            "reply": None if reply is None else {"code": reply.code, "status": reply.xcode,
                                                 "text": reply.text},
            "drop": verdict.drop, "destinations": list(verdict.destinations)}
    lines = [f"{address}: {verdict.kind.value} ({verdict.reason})", f"  answer: {answer}"]
    if verdict.destinations:
        lines.append(f"  forwards to: {', '.join(verdict.destinations)}")
    app.emit(data, "\n".join(lines))


COMMANDS = [resolve]
