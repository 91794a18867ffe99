"""The Clients page in a real browser, against a real `clients-import serve` on a Kafka broker of its own.

Chromium is Debian's (/usr/bin/chromium); Playwright drives it. Nothing here skips: a missing
browser or a server that does not start fails the tests with the reason.
"""

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from clients_import.local_kafka import LocalKafka, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 60


def _wait_until_healthy(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"clients-import serve exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"clients-import serve did not answer {url} within {START_TIMEOUT_S} s:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def browser_kafka() -> Iterator[str]:
    """A broker for this deployment alone: two pipelines on one set of topics would both answer every
    request (the topic names are the contract), so the page's server does not share the e2e broker."""
    with LocalKafka() as kafka:
        yield kafka.bootstrap


@pytest.fixture(scope="module")
def server(browser_kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base_url, token) of a running API with the whole pipeline behind it, stopped when the module ends."""
    folder = tmp_path_factory.mktemp("browser")
    port = free_port()
    token = secrets.token_urlsafe(24)
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": browser_kafka,
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'browser.db'}",
        "API_TOKEN": token,
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "GROUP_PREFIX": f"browser-{secrets.token_hex(4)}",
    }
    log = folder / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "clients_import.cli", "serve"], env=env,
                                   stdout=out, stderr=subprocess.STDOUT, cwd=folder)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(process, f"{base_url}/healthz", log)
        yield base_url, token
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def csp_violations() -> list[str]:
    """What Chromium refused under a Content-Security-Policy during the test. The page fixture fails the test
    on any: the page must work under its own policy. A test that provokes violations on purpose clears it."""
    return []


@pytest.fixture
def page(csp_violations: list[str]) -> Iterator[Page]:
    """A fresh Chromium per test, with no cookies carried over and downloads allowed.

    Playwright is started and stopped around each test, not once per session: its sync API keeps
    an event loop marked as running in this thread, and the async tests that run after these
    (pytest-asyncio) could not start their own while it lived.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
        page = context.new_page()
        # An uncaught script error is a failure, not noise. (Console lines such as the browser's own
        # "Failed to load resource: 401" before signing in are expected and not counted.)
        script_errors: list[str] = []
        page.on("pageerror", lambda error: script_errors.append(str(error)))

        def refused_by_policy(message) -> None:  # Chromium reports each refusal as a console error
            if message.type == "error" and "Content Security Policy" in message.text:
                csp_violations.append(message.text)

        page.on("console", refused_by_policy)
        try:
            yield page
        finally:
            context.close()
            browser.close()
    if script_errors:
        pytest.fail("the page threw: " + "; ".join(script_errors))
    if csp_violations:
        pytest.fail("Chromium refused under the Content-Security-Policy: " + "; ".join(csp_violations))
