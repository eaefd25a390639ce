"""tmail dkim: keys on disk, the records to publish, rotation."""
import os
import stat

import dkim
import pytest

from tmail.keys import public_record


def records(cli, *args):
    return {(r["selector"], r["algorithm"]): r for r in cli.json("dkim", "show-dns", *args)["records"]}


def test_keygen_writes_private_keys_and_prints_matching_records(cli, tmp_path):
    out = cli.json("dkim", "keygen", "--domain", "d.test", "--selector", "s1")
    assert out["changed"] is True
    shown = {(r["selector"], r["algorithm"]): r for r in out["records"]}
    rsa, ed = shown[("s1", "rsa")], shown[("s1", "ed25519")]
    assert rsa["name"] == "s1._domainkey.d.test" and ed["name"] == "s1-ed25519._domainkey.d.test"
    assert rsa["active"] and ed["active"]
    for record in (rsa, ed):
        mode = os.stat(record["path"]).st_mode
        assert stat.S_IMODE(mode) == 0o600
        with open(record["path"], "rb") as handle:
            assert public_record(record["algorithm"], handle.read()) == record["value"]
    assert rsa["value"].startswith("v=DKIM1; k=rsa; p=MII")
    # each zone-file string stays within 255 octets
    assert all(len(part) <= 255 for part in rsa["zone"].split('"')[1::2])
    # the same command again changes nothing and keeps the keys
    again = cli.json("dkim", "keygen", "--domain", "d.test", "--selector", "s1")
    assert again["changed"] is False and again["records"] == out["records"]


def test_a_key_signs_what_its_published_record_verifies(cli):
    cli.json("dkim", "keygen", "--domain", "d.test", "--selector", "s1", "--algorithm", "rsa")
    [record] = cli.json("dkim", "show-dns", "--domain", "d.test")["records"]
    with open(record["path"], "rb") as handle:
        private = handle.read()
    msg = b"From: a@d.test\r\nSubject: x\r\n\r\nbody\r\n"
    signed = dkim.sign(msg, b"s1", b"d.test", private) + msg
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: record["value"].encode())


def test_rotation_with_two_selectors(cli):
    cli.json("dkim", "keygen", "--domain", "d.test", "--selector", "s1")
    second = cli.json("dkim", "keygen", "--domain", "d.test", "--selector", "s2")
    assert not any(r["active"] for r in second["records"])     # publish first, then activate
    assert set(records(cli)) == {("s1", "rsa"), ("s1", "ed25519"), ("s2", "rsa"), ("s2", "ed25519")}
    refused = cli("dkim", "remove", "--domain", "d.test", "--selector", "s1", ok=1)
    assert "activate another first" in refused.stderr
    assert cli.json("dkim", "activate", "--domain", "d.test", "--selector", "s2")["changed"] is True
    assert cli.json("dkim", "activate", "--domain", "d.test", "--selector", "s2")["changed"] is False
    assert cli.json("dkim", "remove", "--domain", "d.test", "--selector", "s1")["changed"] is True
    assert set(records(cli)) == {("s2", "rsa"), ("s2", "ed25519")}
    [listed] = [d for d in cli.json("dkim", "list")["domains"] if d["domain"] == "d.test"]
    assert listed["active"] == "s2" and listed["selectors"] == ["s2"]


@pytest.mark.parametrize("args,code,fragment", [
    (["--domain", "d.test", "--selector", "bad selector"], 2, "invalid selector"),
    (["--domain", "d.test", "--selector", "s1;x"], 2, "invalid selector"),
    (["--domain", "elsewhere.test", "--selector", "s1"], 1, "neither a tmail domain"),
    (["--domain", "d.test", "--selector", "s1", "--algorithm", "dsa"], 2, "dsa"),
])
def test_bad_keygen_input_is_refused_and_writes_nothing(cli, tmp_path, args, code, fragment):
    result = cli("dkim", "keygen", *args, ok=code)
    assert fragment in result.output + (result.stderr or "")
    assert not os.path.exists(tmp_path / "dkim" / "d.test")


def test_the_srs_domain_can_have_keys_too(cli):
    out = cli.json("dkim", "keygen", "--domain", "srs.fwd.test", "--selector", "a", "--algorithm", "ed25519")
    assert [r["name"] for r in out["records"]] == ["a-ed25519._domainkey.srs.fwd.test"]
