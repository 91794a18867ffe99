"""The name Chromium saves a report under, for hostile upload names: the `Content-Disposition` the API
sends (services/api/reports.py), served by a small local HTTP server, downloaded by a real browser."""

import threading
import unicodedata
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote

import pytest
from playwright.sync_api import Page

from services.api.reports import content_disposition

SUFFIX = "-errors.csv"
NAMES = {
    "plain": ("clients", "clients-errors.csv"),
    "quote injection": ('x"; filename*=UTF-8\'\'pwned.html; a="', "x_; filename_=UTF-8''pwned.html; a=-errors.csv"),
    "cyrillic": ("Клиенты", "Клиенты-errors.csv"),
    "right-to-left override": ("report\u202eslx.exe", "reportslx.exe-errors.csv"),
    "CR LF": ("a\r\nSet-Cookie: x=1", None),
    "NUL": ("a\x00b", None),
    "path": ("../../.bashrc", None),
}


@pytest.fixture(scope="module")
def downloads() -> Iterator[str]:
    """Serves /<percent-encoded stored name> as a report download named after it, the way the API does."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            body = b"\xef\xbb\xbfrow,line,errors\r\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/csv; charset=utf-8")
            self.send_header("Content-Disposition", content_disposition(unquote(self.path[1:]) + SUFFIX, SUFFIX))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.mark.parametrize(("stored", "expected"), NAMES.values(), ids=NAMES.keys())
def test_chromium_saves_a_report_under_a_safe_name_with_the_report_suffix(page: Page, downloads: str, stored, expected):
    page.set_content(f'<a id="report" href="{downloads}/{quote(stored, safe="")}">errors.csv</a>')
    with page.expect_download() as info:
        page.click("#report")
    name = info.value.suggested_filename

    assert name.endswith(SUFFIX) and not name.endswith(".html")
    assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in name) and not any(c in name for c in '"/\\')
    if expected:
        assert name == expected
