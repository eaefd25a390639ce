"""The path a person takes, in a real browser: sign in, make an address,
see mail sent to it through Postfix counted and listed, block its sender
from the activity row, and that sender's next message is refused at RCPT.
On the way, screenshots of the main pages (desktop and phone width) go to
docs/screenshots/ for the README."""
import email
import email.policy
import json
import os
import re
import smtplib
import urllib.request

import pytest
from harness import smtp_reply
from playwright.sync_api import expect
from webharness import DESKTOP, PHONE, add_user, screenshot_dir

from tmail.core import replies

PASSWORD = "correct horse battery staple"
OWNER = "alice@real.test"
SENDER = "news@shop.test"
SECOND = "alice@other.test"


def shoot(page, name: str) -> None:
    """`name`-desktop.png and `name`-phone.png, whole pages."""
    directory = screenshot_dir()
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=os.path.join(directory, f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def sign_in(page, url: str, email: str, password: str) -> None:
    page.goto(url + "/")
    expect(page).to_have_url(re.compile(r"/sign-in"))
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def message(subject: str, to: str) -> bytes:
    return (f"From: Shop <{SENDER}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@shop.test>\r\n"
            "Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nhello\r\n").encode()


@pytest.fixture(scope="module")
def owner(site):
    mx, _web = site
    add_user(mx, OWNER, PASSWORD, "--domain", "d.test")
    return OWNER


def test_a_wrong_password_is_refused_and_the_page_says_so(site, owner, page):
    _mx, web = site
    sign_in(page, web.url, owner, "not the password")
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/sign-in"))
    page.goto(web.url + "/addresses")          # not signed in: back to the sign-in page
    expect(page).to_have_url(re.compile(r"/sign-in"))


def test_the_main_path(site, sink, owner, page):
    mx, web = site
    page.goto(web.url + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shoot(page, "sign-in")

    sign_in(page, web.url, owner, PASSWORD)
    expect(page).to_have_url(re.compile(r"/addresses"))
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()

    # A random address, in one click, at the domain's defaults: its page.
    page.get_by_role("button", name="Create random address").click()
    expect(page).to_have_url(re.compile(r"/addresses/\d+$"))
    address = page.locator("#address").inner_text().strip()
    assert re.fullmatch(r"[a-z0-9._-]+@d\.test", address), address
    expect(page.get_by_role("status")).to_contain_text(address)
    detail = page.url
    page.get_by_role("button", name="Copy").click()           # the one script: onto the clipboard
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == address

    # Mail to it through the private Postfix, from the internet (127.0.0.2).
    with mx.client(outside=True) as client:
        client.sendmail(SENDER, [address], message("first", address))
    [forwarded] = sink.wait_for(lambda m: OWNER in m.rcpts, what=f"mail forwarded to {OWNER}")
    assert forwarded.data.endswith(message("first", address))

    # Its page: the counter and the activity row (recorded by the mail path).
    forwarded_count = page.locator("dt:text-is('Forwarded') + dd")
    row = page.get_by_role("row").filter(has_text=SENDER)
    for _ in range(40):   # counted once the pipe has handed it over
        page.goto(detail)
        if forwarded_count.inner_text().strip() == "1" and row.count():
            break
        page.wait_for_timeout(250)
    expect(forwarded_count).to_have_text("1")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("forwarded")

    # Block that sender straight from its row.
    row.get_by_role("button", name="Block sender").click()
    expect(page).to_have_url(re.compile(r"/addresses/\d+$"))
    expect(page.get_by_role("row").filter(has_text=SENDER)).to_contain_text(f"{SENDER} blocked")
    expect(page.locator(".blocked-list")).to_contain_text(SENDER)

    # The next message from that sender is refused at RCPT, before DATA,
    # and the page says so.
    with mx.client(outside=True) as client, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.sendmail(SENDER, [address], message("second", address))
    assert refused.value.recipients == {address: smtp_reply(replies.SENDER_BLOCKED)}   # 550 5.7.1
    assert len(sink.to(OWNER)) == 1
    page.goto(detail)
    expect(page.locator("dt:text-is('Refused') + dd")).to_have_text("1")
    expect(page.get_by_role("row").filter(has_text=SENDER).filter(has_text="refused")).to_have_count(1)
    shoot(page, "address-detail")

    # Replies on, and a reply address to write first to someone from it.
    page.get_by_label("On", exact=True).check()
    page.get_by_label("Name replies go out with").fill("Alice's shopping")
    page.get_by_role("button", name="Save reply settings").click()
    expect(page.get_by_role("status").first).to_contain_text("Replies on")
    page.get_by_label("Their address").fill("seller@market.test")
    page.get_by_role("button", name="Get a reply address").click()
    expect(page.locator("#write-reply")).to_have_text(re.compile(r"^[a-z2-7]{24}@reply\.fwd\.test$"))
    expect(page.get_by_role("row").filter(has_text="seller@market.test")).to_have_count(1)
    shoot(page, "address-replies")

    # An address of one's own choosing, with limits and a note.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="New address").click()
    shoot(page, "new-address")
    page.get_by_label("My choice:").check()
    page.get_by_label(re.compile("^Name before the @")).fill("newsletter")
    page.get_by_label(re.compile("^Expire after \\(")).fill("7d")
    page.get_by_label("Expire after this many messages").fill("20")
    page.get_by_label("Note (only you see it)").fill("the shop's <newsletter>")
    page.get_by_role("button", name="Create address").click()
    expect(page.locator("#address")).to_have_text("newsletter@d.test")
    expect(page.locator("dt:text-is('Note') + dd")).to_have_text("the shop's <newsletter>")   # escaped, shown

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Addresses").click()
    expect(page.get_by_role("link", name="newsletter@d.test")).to_be_visible()
    expect(page.get_by_role("link", name=address)).to_be_visible()
    shoot(page, "addresses")

    # A second destination: tmail mails it a link through Postfix; the
    # link, opened in the browser, confirms it.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Destinations").click()
    page.get_by_label("E-mail address").fill(SECOND)
    page.get_by_role("button", name="Add destination").click()
    entry = page.locator(".destinations li").filter(has_text=SECOND)
    expect(entry).to_contain_text("waiting for confirmation")
    [mail] = sink.wait_for(lambda m: SECOND in m.rcpts, what=f"the link mailed to {SECOND}")
    text = email.message_from_bytes(mail.data, policy=email.policy.default).get_body(("plain",)).get_content()
    link = re.search(r"http://\S+/destinations/verify\?token=\S+", text).group(0)
    page.goto(link)
    page.get_by_role("button", name="Confirm").click()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Destinations").click()
    expect(entry).to_contain_text("verified")
    shoot(page, "destinations")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    shoot(page, "account")

    # An API token for a password manager: made on the API page, shown
    # once; what Bitwarden would send with it makes an address that the
    # Addresses page lists at once.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="API").click()
    page.get_by_label("Name (which program or device uses it)").fill("Bitwarden")
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#api-token").inner_text().strip()
    assert token.startswith("tmail_")
    request = urllib.request.Request(web.url + "/api/alias/random/new?hostname=shop.example", data=b"{}", headers={
        "Authentication": token, "Content-Type": "application/json", "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 201
        made = json.load(answer)["alias"]
    page.get_by_role("link", name="I have copied it").click()
    expect(page.locator(".tokens")).to_contain_text("Bitwarden")
    assert token not in page.content()                  # never shown again
    shoot(page, "api")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Addresses").click()
    expect(page.get_by_text(made)).to_be_visible()

    assert page.errors == [], page.errors   # nothing the CSP blocked, no script errors
