"""A real browser (Debian's chromium, driven by Playwright) against `tmail
web`, beside a private Postfix instance wired to tmail (tests/e2e/harness.py)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "e2e"))
from sink import Sink  # noqa: E402
from webharness import CHROMIUM, CHROMIUM_ARGS, DESKTOP, start  # noqa: E402


@pytest.fixture(scope="module")
def sink():
    server = Sink()
    yield server
    server.close()


@pytest.fixture(scope="module")
def site(sink):
    """(mx, web): the private Postfix with tmail, and `tmail web` on its configuration."""
    mx, web = start(sink.port)
    try:
        yield mx, web
    finally:
        web.stop()
        mx.teardown()


@pytest.fixture(scope="session")
def browser():
    # Missing is a failure, not a skip: tests/run installs it (install.sh --deps-only).
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: run ./install.sh --deps-only"
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser profile (no cookies) at desktop size. What the page
    logs as an error (a script or style the CSP blocked, a failed load) is
    kept in page.errors."""
    context = browser.new_context(viewport=DESKTOP, permissions=["clipboard-read", "clipboard-write"])
    context.set_default_timeout(15_000)
    tab = context.new_page()
    tab.errors = []
    tab.on("console", lambda msg: msg.type == "error" and tab.errors.append(msg.text))
    tab.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    yield tab
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and item.funcargs.get("site"):
        mx, web = item.funcargs["site"]
        report.sections.append(("tmail web log", web.log_text()[-4000:]))
        report.sections.append(("tmail daemon log", mx.tmail_log()[-4000:]))
        report.sections.append(("postfix log", mx.maillog()[-3000:]))
