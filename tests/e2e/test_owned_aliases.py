"""Aliases people own, through the real Postfix: nothing is forwarded to a
destination its owner has not verified, and what happens at an alias is
noted for its owner's page."""
import json

import sqlalchemy as sa
from harness import smtp_reply, wait_until

from tmail.core import replies


def rcpt(mx, address, sender="someone@orig.test"):
    with mx.client() as client:
        client.ehlo()
        client.mail(sender)
        return client.rcpt(address)


def activity(mx, local):
    engine = sa.create_engine(mx.db_url)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT sender, verdict FROM activity JOIN aliases ON aliases.id = activity.alias_id "
            f"WHERE aliases.local = '{local}' ORDER BY activity.id").all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_an_unverified_destination_gets_nothing_until_verified(mx, sink):
    mx.tmail("user", "add", "owner@real.test", "--domain", "d.test")
    mx.tmail("alias", "add", "owned", "--domain", "d.test", "--to", "elsewhere@real.test",
             "--owner", "owner@real.test")
    assert rcpt(mx, "owned@d.test") == smtp_reply(replies.UNVERIFIED)     # 450: the sender retries
    mx.tmail("user", "set", "owner@real.test", "--verified-destination", "elsewhere@real.test")
    with mx.client() as client:
        client.sendmail("someone@orig.test", ["owned@d.test"], b"Subject: now verified\r\n\r\nhi\r\n")
    [msg] = sink.wait_for(lambda m: b"Subject: now verified" in m.data)
    assert msg.rcpts == ["elsewhere@real.test"]


def test_activity_is_noted_for_the_owner(mx, sink):
    mx.tmail("user", "add", "noted@real.test", "--domain", "d.test")
    mx.tmail("alias", "add", "noted", "--domain", "d.test", "--to", "noted@real.test",
             "--owner", "noted@real.test")
    mx.tmail("alias", "block-sender", "noted@d.test", "@spam.test")
    with mx.client() as client:
        client.sendmail("friend@orig.test", ["noted@d.test"], b"Subject: noted\r\n\r\nhi\r\n")
    sink.wait_for(lambda m: b"Subject: noted" in m.data)
    assert rcpt(mx, "noted@d.test", "bad@spam.test") == smtp_reply(replies.SENDER_BLOCKED)
    wait_until(lambda: len(activity(mx, "noted")) == 2, what="two activity rows")
    assert activity(mx, "noted") == [("friend@orig.test", "forward"), ("bad@spam.test", "sender-blocked")]
    shown = json.loads(mx.tmail("alias", "show", "noted@d.test", "--json").stdout)["alias"]
    assert (shown["owner"], shown["forwarded"], shown["refused"]) == ("noted@real.test", 1, 1)
