"""The page against a hostile page in Chromium: one served from another loopback port, which is another
origin but the same *site* (the port does not count), so a SameSite=Strict cookie goes along with its
requests. In production the same holds for any sibling subdomain.
"""

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from playwright.sync_api import Page, expect

from clients_import.local_kafka import free_port

from .test_clients_page import sign_in


class Hostile:
    """A web server of the attacker's on another loopback port, serving the pages a test gives it."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                body = pages.get(self.path, "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def page(self, html: str) -> str:
        path = f"/{uuid.uuid4().hex}.html"
        self.pages[path] = html
        return self.url + path


@pytest.fixture(scope="module")
def hostile() -> Iterator[Hostile]:
    site = Hostile()
    thread = threading.Thread(target=site.server.serve_forever, daemon=True)
    thread.start()
    yield site
    site.server.shutdown()
    site.server.server_close()


def imports_named(server: tuple[str, str], file_name: str) -> list[dict]:
    base_url, token = server
    listing = httpx.get(f"{base_url}/imports", params={"limit": 200}, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return [job for job in listing.json()["items"] if job["file_name"] == file_name]


def test_an_import_posted_from_another_port_with_the_session_cookie_is_refused(page: Page, server, hostile: Hostile):
    base_url, _ = server
    sign_in(page, server)  # the person is signed in: the browser holds the session cookie
    name = f"csrf-{uuid.uuid4().hex[:8]}.csv"
    # A "simple" request (no preflight): multipart form data, sent with the cookie, the answer unreadable.
    attack = hostile.page(f"""<!doctype html><title>cute cats</title><script>
      const form = new FormData();
      form.append("file", new Blob(["firstName,email\\nMallory,mallory@{uuid.uuid4().hex[:8]}.example\\n"]), "{name}");
      fetch("{base_url}/imports", {{method: "POST", mode: "no-cors", credentials: "include", body: form}})
        .finally(() => {{ document.title = "sent"; }});
    </script>""")

    with page.expect_response(f"{base_url}/imports") as answered:
        page.goto(attack)
    expect(page).to_have_title("sent")
    # 403 is the cross-site refusal, which only a request carrying the session cookie gets: SameSite=Strict
    # let the cookie through (without it the answer would be 401). Before the guard this was a 202.
    assert answered.value.status == 403
    assert imports_named(server, name) == []

    # The person's own page, on its own origin, still imports with the same cookie.
    page.goto(base_url)
    expect(page.get_by_role("heading", name="Clients", level=1)).to_be_visible()
    result = page.evaluate("""async (name) => {
      const form = new FormData();
      form.append("file", new Blob(["firstName,email\\nOwn,own@" + name + ".example\\n"]), name);
      const answer = await fetch("/imports", {method: "POST", body: form, headers: {"X-Requested-With": "clients-import"}});
      return answer.status;
    }""", name)
    assert result == 202
    # (The job list may be answered from the API's 500 ms read cache: look again until it shows.)
    deadline = time.monotonic() + 5
    while not imports_named(server, name) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(imports_named(server, name)) == 1


def test_the_page_is_not_shown_in_a_frame_of_another_origin(page: Page, server, hostile: Hostile, csp_violations: list[str]):
    base_url, _ = server
    sign_in(page, server)  # signed in, as a clickjacking victim would be
    framing = hostile.page(f"""<!doctype html><title>win a prize</title>
      <iframe id="victim" src="{base_url}/" width="800" height="600" onload="document.title = 'loaded'"></iframe>""")
    page.goto(framing)
    expect(page).to_have_title("loaded")
    victim = page.frame_locator("#victim")
    # Chromium shows its own error page in the frame instead: none of the page's controls are there to click.
    expect(victim.locator("#signin-form, #import-button")).to_have_count(0)
    assert not any(frame.url.startswith(base_url) for frame in page.frames)
    assert any("frame-ancestors 'none'" in text for text in csp_violations)
    csp_violations.clear()  # provoked on purpose


def test_an_injected_inline_script_or_handler_does_not_run(page: Page, server, csp_violations: list[str]):
    """Were a value ever to reach the page as markup, the policy still keeps it from running."""
    sign_in(page, server)
    page.evaluate("""() => {
      const script = document.createElement("script");
      script.textContent = "window.injected = 'script'";
      document.body.append(script);
      const image = document.createElement("div");
      image.innerHTML = '<img src="/nowhere.png" onerror="window.injected = \\'handler\\'">';
      document.body.append(image);
    }""")
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.injected ?? null") is None
    assert any("inline" in text for text in csp_violations)
    csp_violations.clear()  # provoked on purpose
