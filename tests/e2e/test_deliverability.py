"""DKIM, ARC and DMARC-safe forwarding end to end, checked as a new admin
would: keys generated with the CLI, the printed records published in a test
zone, signed mail forwarded through Postfix, and what the sink received
verified with dkimpy."""
import json
import smtplib

import dkim
import pytest
from harness import SRS_DOMAIN

from tmail.keys import generate_private, public_record
from tmail.resolver import Resolver

SENDER_KEY = generate_private("rsa", 2048)
HOST = ("mx.fwd.test", "127.0.0.1")


def send(mx, rcpt, body, sender):
    with smtplib.SMTP("127.0.0.1", mx.smtp_port, timeout=30) as client:
        client.ehlo("client.sender.test")
        client.sendmail(sender, [rcpt], body)


def message(sender_header: bytes, subject: bytes, body: bytes = b"Hello,\r\n\r\nsee you  \r\n") -> bytes:
    return (b"From: " + sender_header + b"\r\nTo: someone@d.test\r\nSubject: " + subject + b"\r\n"
            b"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + subject.replace(b" ", b".")
            + b"@sender.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n" + body)


def signed(msg: bytes) -> bytes:
    return dkim.sign(msg, b"sel", b"sender.test", SENDER_KEY, canonicalize=(b"relaxed", b"relaxed")) + msg


@pytest.fixture(scope="module")
def dmx(mx):
    """The session's instance with keys made and published, and sender domains
    in DNS (taken out again afterwards: the other modules' mail stays as it was)."""
    saved = {k: list(v) for k, v in mx.zone.records.items()}
    for domain in ("d.test", SRS_DOMAIN):
        mx.tmail("dkim", "keygen", "--domain", domain, "--selector", "s1", as_root=True)
    shown = json.loads(mx.tmail("dkim", "show-dns", "--json").stdout)
    for record in shown["records"]:
        mx.zone.txt(record["name"], record["value"])
    zone = mx.zone
    zone.add("mx.fwd.test", "A", HOST[1])
    for domain in ("d.test", SRS_DOMAIN):
        zone.add(domain, "MX", "10 mx.fwd.test.")
        zone.txt(domain, "v=spf1 ip4:127.0.0.1 -all")
        zone.txt(f"_dmarc.{domain}", "v=DMARC1; p=none")
    zone.txt("sel._domainkey.sender.test", public_record("rsa", SENDER_KEY))
    zone.txt("sender.test", "v=spf1 ip4:127.0.0.1 -all")
    zone.txt("_dmarc.sender.test", "v=DMARC1; p=reject")
    zone.txt("lax.test", "v=spf1 ip4:127.0.0.1 -all")
    zone.txt("_dmarc.lax.test", "v=DMARC1; p=none")
    for local, mode in (("dk", None), ("never", "never"), ("always", "always")):
        extra = ("--from-rewrite", mode) if mode else ()
        mx.tmail("alias", "add", local, "--domain", "d.test", "--to", f"{local}@real.test", *extra)
    yield mx
    mx.zone.records.clear()
    mx.zone.records.update(saved)


def txt_lookup(mx):
    resolver = Resolver([("127.0.0.1", mx.dns.port)])
    return lambda name, timeout=5: (resolver.txt(name.decode().rstrip(".")) or [None])[0]


def received(sink, rcpt):
    [msg] = sink.wait_for(lambda m: rcpt in m.rcpts)
    return msg.data


def header_value(data: bytes, name: bytes) -> bytes:
    header = data.split(b"\r\n\r\n", 1)[0]
    for field in header.replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ").split(b"\r\n"):
        if field.lower().startswith(name.lower() + b":"):
            return field.split(b":", 1)[1].strip()
    return b""


def signatures(data: bytes, dnsfunc) -> list[tuple[bytes, bool]]:
    verifier = dkim.DKIM(data)
    count = sum(1 for n, _ in verifier.headers if n.lower() == b"dkim-signature")
    results = []
    for index in range(count):
        ok = verifier.verify(idx=index, dnsfunc=dnsfunc)
        results.append((verifier.domain + b"/" + verifier.signature_fields[b"a"], ok))
    return results


def test_original_and_tmail_signatures_and_arc_verify_at_the_mailbox(dmx, sink):
    original = signed(message(b"Alice <alice@sender.test>", b"signed mail"))
    send(dmx, "dk@d.test", original, "alice@sender.test")
    data = received(sink, "dk@real.test")
    dnsfunc = txt_lookup(dmx)
    assert data.endswith(original.split(b"\r\n\r\n", 1)[1])       # body untouched
    assert sorted(signatures(data, dnsfunc)) == [
        (b"d.test/ed25519-sha256", True), (b"d.test/rsa-sha256", True), (b"sender.test/rsa-sha256", True)]
    cv, _results, reason = dkim.arc_verify(data, dnsfunc=dnsfunc)
    assert cv == dkim.CV_Pass, reason
    results = header_value(data, b"Authentication-Results")
    assert results.startswith(b"mx.fwd.test;")
    for clause in (b"spf=pass smtp.mailfrom=alice@sender.test", b"dkim=pass header.d=sender.test",
                   b"dmarc=pass (p=reject) header.from=sender.test", b"arc=none"):
        assert clause in results, results
    assert header_value(data, b"From") == b"Alice <alice@sender.test>"   # aligned DKIM survives


def test_an_incoming_arc_chain_is_continued(dmx, sink):
    # an upstream forwarder (list.test) verified the original and sealed it
    upstream_ar = b"Authentication-Results: mx.list.test; dkim=pass header.d=sender.test; arc=none\r\n"
    original = signed(message(b"alice@sender.test", b"via a list"))
    sealed = b"".join(dkim.arc_sign(upstream_ar + original, b"sel", b"sender.test", SENDER_KEY,
                                    b"mx.list.test")) + upstream_ar + original
    send(dmx, "dk@d.test", sealed, "alice@sender.test")
    data = received(sink, "dk@real.test")
    assert b"arc=pass" in header_value(data, b"Authentication-Results")
    assert b"i=2; cv=pass" in header_value(data, b"ARC-Seal").replace(b"\r\n", b"")
    cv, results, reason = dkim.arc_verify(data, dnsfunc=txt_lookup(dmx))
    assert cv == dkim.CV_Pass and len(results) == 2, reason


def test_reject_policy_without_surviving_dkim_rewrites_from_when_needed(dmx, sink):
    plain = message(b'"Alice A." <alice@sender.test>', b"unsigned mail")
    send(dmx, "dk@d.test", plain, "alice@sender.test")
    data = received(sink, "dk@real.test")
    assert header_value(data, b"From") == b'"Alice A. (alice@sender.test)" <dk@d.test>'
    assert header_value(data, b"Reply-To") == b'"Alice A." <alice@sender.test>'
    assert header_value(data, b"X-Original-From") == b'"Alice A." <alice@sender.test>'
    dnsfunc = txt_lookup(dmx)
    # tmail's signature now aligns with From, and the chain is sealed
    assert (b"d.test/rsa-sha256", True) in signatures(data, dnsfunc)
    assert dkim.arc_verify(data, dnsfunc=dnsfunc)[0] == dkim.CV_Pass
    # a forged "pass" from the sender with tmail's authserv-id is not taken at its word
    assert header_value(data, b"Authentication-Results").count(b"mx.fwd.test") == 1


def test_from_is_kept_for_relaxed_policies_and_never_mode(dmx, sink):
    send(dmx, "dk@d.test", message(b"lax@lax.test", b"lax policy"), "lax@lax.test")
    assert header_value(received(sink, "dk@real.test"), b"From") == b"lax@lax.test"
    sink.messages.clear()
    send(dmx, "never@d.test", message(b"alice@sender.test", b"never rewrite"), "alice@sender.test")
    assert header_value(received(sink, "never@real.test"), b"From") == b"alice@sender.test"


def test_always_mode_rewrites_even_signed_mail(dmx, sink):
    send(dmx, "always@d.test", signed(message(b"alice@sender.test", b"always")), "alice@sender.test")
    data = received(sink, "always@real.test")
    assert header_value(data, b"From") == b'"alice@sender.test" <always@d.test>'
    assert header_value(data, b"Reply-To") == b"<alice@sender.test>"


def test_forged_authentication_results_are_removed(dmx, sink):
    forged = b"Authentication-Results: mx.fwd.test; spf=pass smtp.mailfrom=x@sender.test\r\n"
    send(dmx, "never@d.test", forged + message(b"bob@nowhere.test", b"forged ar"), "bob@nowhere.test")
    data = received(sink, "never@real.test")
    results = header_value(data, b"Authentication-Results")
    assert b"spf=none" in results and b"x@sender.test" not in results
    assert b"spf=pass smtp.mailfrom=x@sender.test" not in data


@pytest.mark.parametrize("forged", [
    b"Authentication-Results: (a(b)c) mx.fwd.test; dkim=pass header.d=plain.test\r\n",
    b"Authentication-Results: \"mx.fwd.test\"; dkim=pass header.d=plain.test\r\n",
    b"Authentication-Results: MX.FWD.TEST (x);\r\n dkim=pass header.d=plain.test\r\n",
    b"Authentication-Results: mx.fwd.test 1; dkim=pass header.d=plain.test\r\n",
], ids=["nested comment", "quoted", "capitals, folded", "version"])
def test_no_form_of_a_forged_result_reaches_the_seal(dmx, sink, forged):
    send(dmx, "never@d.test", forged + message(b"bob@nowhere.test", b"forged forms"), "bob@nowhere.test")
    data = received(sink, "never@real.test")
    assert b"plain.test" not in data, data[:2000]


def test_forwarded_exactly_as_it_arrived(dmx, sink):
    """A message from the internet without Date or Message-ID, with bare
    local names in To and Cc: neither Postfix nor tmail adds or qualifies
    anything on the way, and tmail's own signature covers what leaves."""
    original = (b"From: lax@lax.test\r\nTo: someone\r\nCc: other\r\nSubject: bare\r\n"
                b"\r\nas it came\r\n")
    with dmx.client(outside=True) as client:
        client.sendmail("lax@lax.test", ["never@d.test"], original)
    data = received(sink, "never@real.test")
    assert data.endswith(original)
    above = data[:-len(original)]
    assert b"\r\nMessage-I" not in b"\r\n" + above and b"\r\nDate:" not in b"\r\n" + above
    assert (b"d.test/rsa-sha256", True) in signatures(data, txt_lookup(dmx))
    assert dkim.arc_verify(data, dnsfunc=txt_lookup(dmx))[0] == dkim.CV_Pass


def test_the_other_recipients_copy_is_not_touched(dmx, sink):
    """The SPF result reaches tmail's delivery without a field in the shared
    message: a recipient at another domain gets the message as it was sent."""
    original = message(b"alice@sender.test", b"shared message")
    with dmx.client(outside=False) as client:
        client.sendmail("alice@sender.test", ["never@d.test", "bob@elsewhere.test"], original)
    [other] = sink.wait_for(lambda m: m.rcpts == ["bob@elsewhere.test"])
    assert other.data.endswith(original)
    assert b"Authentication-Results" not in other.data and b"mx.fwd.test;" not in other.data
    assert b"spf=pass" in header_value(received(sink, "never@real.test"), b"Authentication-Results")


def test_a_from_field_with_a_comma_in_a_comment_is_read_right(dmx, sink):
    """Python's getaddresses (Debian 12) reads this From as empty; DMARC then
    ran on no domain and From was not rewritten for a p=reject sender."""
    plain = message(b"Alice (Sales, EMEA) <alice@sender.test>", b"comment with comma")
    send(dmx, "dk@d.test", plain, "alice@sender.test")
    data = received(sink, "dk@real.test")
    assert b"dmarc=pass (p=reject) header.from=sender.test" in header_value(data, b"Authentication-Results")
    assert header_value(data, b"From") == b'"Alice (alice@sender.test)" <dk@d.test>'   # no DKIM survives


def test_six_hundred_signatures_cost_ten_verifications(dmx, sink):
    """One crafted message must not cost minutes of CPU: only the first ten
    signatures are verified (each with its own l=, its own body hash)."""
    fake = b"".join(b"DKIM-Signature: v=1; a=rsa-sha256; d=sender.test; s=sel; c=relaxed/relaxed;"
                    b" l=%d; h=from; bh=AAAA; b=AAAA\r\n" % i for i in range(600))
    body = b"x" * 76 + b"\r\n"
    send(dmx, "never@d.test", fake + message(b"bob@nowhere.test", b"many signatures", body * 27000),
         "bob@nowhere.test")
    data = received(sink, "never@real.test")
    results = header_value(data, b"Authentication-Results")
    assert results.count(b"dkim=fail") + results.count(b"dkim=permerror") == 10, results[:600]
    assert b"dkim=policy" in results and b"590 more" in results


def test_a_forged_sender_of_a_p_reject_domain_is_refused_not_laundered(dmx, sink):
    """From the internet, From and MAIL FROM of sender.test (p=reject) with
    no signature and SPF failing: refused at the end of DATA. With a
    signature that does not verify, it is forwarded as it came: never given
    a From of the alias's signed by tmail (that would pass DMARC later)."""
    spoof = message(b"Security <alice@sender.test>", b"please log in")
    with dmx.client(outside=True) as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("alice@sender.test", ["dk@d.test"], spoof)
    assert refused.value.smtp_code == 550 and b"DMARC" in refused.value.smtp_error
    broken = signed(message(b"Security <alice@sender.test>", b"signed, then changed")).replace(
        b"see you", b"see me")
    with dmx.client(outside=True) as client:
        client.sendmail("alice@sender.test", ["dk@d.test"], broken)
    data = received(sink, "dk@real.test")
    assert header_value(data, b"From") == b"Security <alice@sender.test>"
    assert b"dmarc=fail (p=reject)" in header_value(data, b"Authentication-Results")


def test_a_crafted_arc_set_is_a_failed_chain_not_an_internal_error(dmx, sink):
    """dkimpy raised IndexError on an i= tag at the end of the field; the
    delivery deferred until the message expired and bounced."""
    crafted = (b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=x.test; s=s; t=1; b=AAAA\r\n"
               b"ARC-Message-Signature: a=rsa-sha256; c=relaxed/relaxed; d=x.test; s=s; h=from; "
               b"bh=AAAA; b=AAAA; i=1\r\n"
               b"ARC-Authentication-Results: i=1; x.test; spf=pass\r\n")
    send(dmx, "never@d.test", crafted + message(b"lax@lax.test", b"crafted arc"), "lax@lax.test")
    data = received(sink, "never@real.test")
    assert b"arc=fail" in header_value(data, b"Authentication-Results")


def doctor(mx, *args):
    result = mx.tmail("doctor", "--host", HOST[0], "--ip", HOST[1], "--json",
                      "--domain", "d.test", "--domain", SRS_DOMAIN, *args, check=False)
    return result.returncode, json.loads(result.stdout)


def statuses(report, domain):
    [entry] = [d for d in report["domains"] if d["domain"] == domain]
    return {c["check"]: (c["status"], c["publish"]) for c in entry["checks"]}


def test_doctor_passes_a_correct_setup(dmx):
    code, report = doctor(dmx)
    assert code == 0, report
    for domain in ("d.test", SRS_DOMAIN):
        assert {k: v[0] for k, v in statuses(report, domain).items()} == {
            "mx": "ok", "spf": "ok", "dkim-rsa": "ok", "dkim-ed25519": "ok", "dmarc": "ok"}


@pytest.mark.parametrize("name,rdtype,check,status", [
    (SRS_DOMAIN, "MX", "mx", "error"),
    (SRS_DOMAIN, "TXT", "spf", "error"),
    ("s1._domainkey." + SRS_DOMAIN, "TXT", "dkim-rsa", "error"),
    ("s1-ed25519._domainkey." + SRS_DOMAIN, "TXT", "dkim-ed25519", "error"),
    ("_dmarc." + SRS_DOMAIN, "TXT", "dmarc", "warning"),
])
def test_doctor_reports_each_missing_record_with_what_to_publish(dmx, name, rdtype, check, status):
    saved = {k: list(v) for k, v in dmx.zone.records.items()}
    try:
        dmx.zone.remove(name, rdtype)
        code, report = doctor(dmx)
        got_status, publish = statuses(report, SRS_DOMAIN)[check]
        assert got_status == status
        assert publish.startswith(name + ".")
        assert code == (1 if status == "error" else 0)
        # publishing what it says fixes it
        line = publish.split(" IN ", 1)[1]
        kind, value = line.split(" ", 1)
        if kind == "TXT":
            dmx.zone.add(name, "TXT", value.strip("( )"))
        else:
            dmx.zone.add(name, kind, value)
        assert statuses(doctor(dmx)[1], SRS_DOMAIN)[check][0] == "ok"
    finally:
        dmx.zone.records.clear()
        dmx.zone.records.update(saved)


def test_doctor_spots_a_key_that_does_not_match_dns(dmx):
    other = public_record("rsa", generate_private("rsa", 1024))
    saved = {k: list(v) for k, v in dmx.zone.records.items()}
    try:
        dmx.zone.remove("s1._domainkey.d.test", "TXT")
        dmx.zone.txt("s1._domainkey.d.test", other)
        status, publish = statuses(doctor(dmx)[1], "d.test")["dkim-rsa"]
        assert status == "error" and "s1._domainkey.d.test" in publish
    finally:
        dmx.zone.records.clear()
        dmx.zone.records.update(saved)


def test_a_signed_message_with_a_line_over_998_characters_still_verifies(dmx, sink):
    """lmtp(8) folds lines over lmtp_line_length_limit (998) unless told
    not to: the sender's DKIM body hash then failed, and From was rewritten."""
    body = b"Hello,\r\n" + b"x" * 1500 + b"\r\nbye\r\n"
    original = signed(message(b"Alice <alice@sender.test>", b"long line", body))
    send(dmx, "dk@d.test", original, "alice@sender.test")
    data = received(sink, "dk@real.test")
    assert b"dkim=pass header.d=sender.test" in header_value(data, b"Authentication-Results")
    assert header_value(data, b"From") == b"Alice <alice@sender.test>"


def test_relayed_bounces_and_notices_are_signed_by_the_srs_domain(dmx, sink):
    dnsfunc = txt_lookup(dmx)
    dmx.tmail("alias", "add", "gone", "--domain", "d.test", "--to", "gone.mailbox@real.test")
    sink.reject.add("gone.mailbox@real.test")
    send(dmx, "gone@d.test", message(b"carol@sender.test", b"will bounce"), "carol@sender.test")
    [dsn] = sink.wait_for(lambda m: m.rcpts == ["carol@sender.test"], what="relayed bounce")
    assert signatures(dsn.data, dnsfunc) == [(SRS_DOMAIN.encode() + b"/ed25519-sha256", True),
                                             (SRS_DOMAIN.encode() + b"/rsa-sha256", True)]

    dmx.tmail("domain", "set", "d.test", "--warn-before", "2d")
    dmx.tmail("alias", "add", "soon", "--domain", "d.test", "--to", "soon.owner@real.test", "--ttl", "1d")
    try:
        dmx.tmail("notify")
        [notice] = sink.wait_for(lambda m: m.rcpts == ["soon.owner@real.test"], what="expiry notice")
        assert sorted(signatures(notice.data, dnsfunc)) == [
            (SRS_DOMAIN.encode() + b"/ed25519-sha256", True), (SRS_DOMAIN.encode() + b"/rsa-sha256", True)]
    finally:
        dmx.tmail("domain", "set", "d.test", "--warn-before", "none")
