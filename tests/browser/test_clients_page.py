"""The Clients page as a person uses it: sign in, import through the modal, read the notification.

Each test works on its own emails (a fresh domain) and file names, since all share one server.
"""

import csv
import io
import re
import uuid
import zipfile
from pathlib import Path

from playwright.sync_api import Page, expect

PIPELINE_TIMEOUT_MS = 30_000
DOCS = Path(__file__).resolve().parents[2] / "docs"
HEADER = "firstName,email,username,middleName,lastName"


def unique() -> str:
    return uuid.uuid4().hex[:10]


def sign_in(page: Page, server: tuple[str, str]) -> None:
    base_url, token = server
    page.goto(base_url)
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Clients", level=1)).to_be_visible()
    # The recent imports are in (and with them any import already running).
    expect(page.locator("#history-body tr, #history-empty").first).to_be_visible()


def imports_running(page: Page) -> int:
    """The header's count. Other imports on the same server may be running too, so tests compare counts."""
    text = page.locator("#running").text_content() or ""
    match = re.fullmatch(r"(No|[\d,]+) imports? running", text.strip())
    assert match, f"unexpected status text {text!r}"
    return 0 if match[1] == "No" else int(match[1].replace(",", ""))


def running_text(n: int) -> str:
    return "No imports running" if n == 0 else f"{n} import{'' if n == 1 else 's'} running"


def write_csv(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def seed_example(tag: str) -> str:
    """The seed's two-row example, with emails of this test's own."""
    return (f"{HEADER}\nexample1,{tag}1@example.com,,,exampleL1\nexample2,{tag}2@example.com,,,exampleL2\n")


def dialog(page: Page):
    return page.get_by_role("dialog", name="Wants to import clients?")


def start_import(page: Page, path: Path) -> None:
    page.get_by_role("button", name="Import", exact=True).click()
    modal = dialog(page)
    expect(modal).to_be_visible()
    modal.get_by_label("Attach file").set_input_files(path)
    expect(modal.get_by_text(f"Attached: {path.name}")).to_be_visible()
    modal.get_by_role("button", name="Start import").click()


def toast_for(page: Page, file_name: str):
    return page.locator(".toast").filter(has_text=file_name)


def test_signing_in_shows_the_clients_page_and_keeps_the_token_out_of_storage(page: Page, server, output_dir: Path):
    base_url, token = server
    page.goto(base_url)
    expect(page.get_by_label("API token")).to_have_attribute("type", "password")
    expect(page.get_by_role("button", name="Import", exact=True)).to_be_hidden()
    page.screenshot(path=output_dir / "sign-in.png")

    sign_in(page, server)
    expect(page.get_by_role("button", name="Import", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Recent imports")).to_be_visible()
    imports_running(page)  # says how many imports are running, in words
    expect(page.get_by_role("button", name="Notifications")).to_be_visible()
    page.screenshot(path=output_dir / "clients-page.png")

    stored = page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}, location.href, document.cookie])")
    assert token not in stored, "the token must live only in the HttpOnly cookie's session, never in storage or URLs"
    cookies = page.context.cookies()
    assert cookies and all(c["httpOnly"] and c["sameSite"] == "Strict" for c in cookies)
    assert all(token not in c["value"] for c in cookies)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API token")).to_be_visible()
    expect(page.get_by_role("button", name="Import", exact=True)).to_be_hidden()
    page.reload()
    expect(page.get_by_label("API token")).to_be_visible()  # the session really ended on the server
    page.screenshot(path=output_dir / "signed-out.png")


def test_a_wrong_token_is_refused_and_no_client_data_is_shown(page: Page, server, output_dir: Path):
    base_url, _ = server
    page.goto(base_url)
    page.get_by_label("API token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That token is not valid.")
    expect(page.locator("#app-view")).to_be_hidden()
    expect(page.locator("#clients-body tr")).to_have_count(0)
    expect(page.get_by_role("heading", name="Clients", level=1)).to_be_hidden()
    page.screenshot(path=output_dir / "wrong-token.png")


def test_the_seed_example_is_imported_and_notified(page: Page, server, output_dir: Path, tmp_path: Path):
    tag = f"seed{unique()}"
    path = write_csv(tmp_path, f"clients-{tag}.csv", seed_example(tag))
    sign_in(page, server)
    start_import(page, path)

    modal = dialog(page)
    expect(modal.get_by_role("heading", name="Import finished")).to_be_visible(timeout=PIPELINE_TIMEOUT_MS)
    expected = f"{path.name} imported: 2 created, 0 updated, 0 unchanged, 0 rejected."
    expect(modal.locator("#outcome-text")).to_have_text(expected)
    expect(modal.get_by_role("link", name="Download results.csv")).to_be_visible()
    page.screenshot(path=output_dir / "seed-imported-modal.png")

    # The notification waits for the modal to close, so it never covers the modal's buttons.
    modal.get_by_role("button", name="Done").click()
    expect(modal).to_be_hidden()
    toast = toast_for(page, path.name)
    expect(toast).to_have_attribute("role", "status")
    expect(toast).to_contain_text(expected)
    expect(toast.get_by_role("link", name="Download results.csv")).to_be_visible()
    expect(toast.get_by_role("link", name="Download errors.csv")).to_have_count(0)
    for n in (1, 2):
        expect(page.locator("#clients-body").get_by_text(f"{tag}{n}@example.com")).to_be_visible()
    expect(page.locator("#clients-body tr").filter(has_text=f"{tag}1@example.com")).to_contain_text("example1 exampleL1")

    history_row = page.locator("#history-body tr").filter(has_text=path.name)
    expect(history_row).to_contain_text("Completed")
    expect(history_row).to_contain_text("2 created")
    expect(history_row).to_contain_text("web")

    bell = page.get_by_role("button", name=re.compile(r"^Notifications, \d+ new$"))
    bell.click()
    expect(page.locator("#bell-list")).to_contain_text(expected)
    page.screenshot(path=output_dir / "seed-imported-page.png")


def test_bad_rows_are_counted_and_errors_csv_downloads(page: Page, server, output_dir: Path, tmp_path: Path):
    tag = f"bad{unique()}"
    text = (f"{HEADER}\n"
            f"good,{tag}good@example.com,,,Person\n"
            f",{tag}noname@example.com,,,Person\n"
            f"badmail,{tag}-not-an-email,,,Person\n")
    path = write_csv(tmp_path, f"bad-rows-{tag}.csv", text)
    sign_in(page, server)
    start_import(page, path)

    modal = dialog(page)
    expect(modal.get_by_role("heading", name=re.compile("some rows were rejected"))).to_be_visible(timeout=PIPELINE_TIMEOUT_MS)
    expect(modal.locator("#outcome-errors-body tr")).to_have_count(2)
    page.screenshot(path=output_dir / "bad-rows-modal.png")
    page.keyboard.press("Escape")
    toast = toast_for(page, path.name)
    expect(toast).to_contain_text("1 created, 0 updated, 0 unchanged, 2 rejected.")
    page.screenshot(path=output_dir / "bad-rows-notification.png")

    with page.expect_download() as download_info:
        toast.get_by_role("link", name="Download errors.csv").click()
    download = download_info.value
    saved = output_dir / download.suggested_filename
    download.save_as(saved)
    assert download.suggested_filename == f"bad-rows-{tag}-errors.csv", download.suggested_filename
    rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
    assert "errors" in rows[0]
    assert {row["email"] for row in rows} == {f"{tag}noname@example.com", f"{tag}-not-an-email"}
    assert all(row["errors"] for row in rows)


def test_a_workbook_renamed_csv_is_refused_with_the_reason_in_the_modal(page: Page, server, output_dir: Path, tmp_path: Path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as workbook:
        workbook.writestr("[Content_Types].xml", "<Types/>")
        workbook.writestr("xl/workbook.xml", "<workbook/>")
        workbook.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
    data = buffer.getvalue()
    assert data.startswith(b"PK\x03\x04") and b"xl/workbook.xml" in data
    path = tmp_path / f"workbook-{unique()}.csv"
    path.write_bytes(data)
    sign_in(page, server)
    start_import(page, path)

    modal = dialog(page)
    expect(modal.get_by_role("heading", name="The file was not imported")).to_be_visible(timeout=PIPELINE_TIMEOUT_MS)
    expect(modal.locator("#outcome-text")).to_contain_text(f"{path.name} was not imported:")
    expect(modal.locator("#outcome-text")).to_contain_text("Excel workbook")
    expect(modal.get_by_role("link")).to_have_count(0)  # nothing was written, so no report to offer
    page.screenshot(path=output_dir / "workbook-refused.png")
    page.keyboard.press("Escape")
    expect(toast_for(page, path.name)).to_contain_text("Excel workbook")
    expect(page.locator("#history-body tr").filter(has_text=path.name)).to_contain_text("Not imported")


def test_a_dry_run_writes_nothing(page: Page, server, output_dir: Path, tmp_path: Path):
    tag = f"dry{unique()}"
    path = write_csv(tmp_path, f"dry-{tag}.csv", seed_example(tag))
    sign_in(page, server)
    page.get_by_role("button", name="Import", exact=True).click()
    modal = dialog(page)
    modal.get_by_label("Dry run (check only, write nothing)").check()
    modal.get_by_label("Attach file").set_input_files(path)
    modal.get_by_role("button", name="Start import").click()
    expect(modal.get_by_role("heading", name="Check finished: nothing was written")).to_be_visible(timeout=PIPELINE_TIMEOUT_MS)
    expect(modal.locator("#outcome-text")).to_contain_text("2 would be created")
    page.screenshot(path=output_dir / "dry-run.png")
    page.keyboard.press("Escape")
    expect(page.locator("#history-body tr").filter(has_text=path.name)).to_contain_text("Checked (dry run)")
    page.get_by_label("Search clients").fill(tag)
    expect(page.locator("#clients-range")).to_have_text("0 clients")
    expect(page.locator("#clients-empty")).to_contain_text("No clients match")


def test_an_ended_session_is_reported_in_the_modal(page: Page, server, output_dir: Path, tmp_path: Path):
    path = write_csv(tmp_path, f"late-{unique()}.csv", seed_example(f"late{unique()}"))
    sign_in(page, server)
    page.context.clear_cookies()  # as if the session expired while the page stayed open
    start_import(page, path)
    modal = dialog(page)
    alert = modal.get_by_role("alert")
    expect(alert).to_contain_text("Sign in with the API token")  # the server's message, as it is
    page.screenshot(path=output_dir / "session-ended.png")
    alert.get_by_role("button", name="Sign in again").click()
    expect(page.get_by_label("API token")).to_be_visible()
    expect(page.locator("#clients-body tr")).to_have_count(0)


def test_quick_checks_refuse_a_file_that_is_not_csv_before_uploading(page: Page, server, output_dir: Path, tmp_path: Path):
    path = write_csv(tmp_path, "clients.txt", seed_example("never"))
    sign_in(page, server)
    uploads: list[str] = []
    page.on("request", lambda request: uploads.append(request.url) if request.method == "POST" else None)
    page.get_by_role("button", name="Import", exact=True).click()
    modal = dialog(page)
    modal.get_by_label("Attach file").set_input_files(path)
    expect(modal.get_by_role("alert")).to_contain_text("is not a CSV file")
    modal.get_by_role("button", name="Start import").click()
    expect(modal.get_by_role("alert")).to_contain_text("is not a CSV file")
    assert uploads == []
    page.screenshot(path=output_dir / "not-csv.png")


def drop_file(page: Page, name: str, text: str = "", size: int = 0) -> None:
    """Drop a file on the drop zone the way a browser does: a drop event carrying a DataTransfer."""
    transfer = page.evaluate_handle(
        """([name, text, size]) => {
            const transfer = new DataTransfer();
            const body = size ? new Uint8Array(size) : text;
            transfer.items.add(new File([body], name, { type: "text/csv" }));
            return transfer;
        }""",
        [name, text, size],
    )
    page.dispatch_event("#drop-zone", "dragover", {"dataTransfer": transfer})
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})


def test_a_file_dropped_on_the_drop_zone_is_checked_then_imported(page: Page, server, output_dir: Path):
    tag = f"drop{unique()}"
    sign_in(page, server)
    posts: list[str] = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    page.get_by_role("button", name="Import", exact=True).click()
    modal = dialog(page)

    drop_file(page, "huge.csv", size=10 * 1024 * 1024 + 1)
    expect(modal.get_by_role("alert")).to_contain_text("larger than the 10 MB a file can be")
    modal.get_by_role("button", name="Start import").click()
    assert posts == [], "a file over the limit must not be uploaded"
    page.screenshot(path=output_dir / "dropped-too-big.png")

    drop_file(page, f"dropped-{tag}.csv", text=seed_example(tag))
    expect(modal.get_by_text(f"Attached: dropped-{tag}.csv")).to_be_visible()
    expect(modal.get_by_role("alert")).to_be_hidden()
    modal.get_by_role("button", name="Start import").click()
    expect(modal.locator("#outcome-text")).to_contain_text("2 created", timeout=PIPELINE_TIMEOUT_MS)
    page.screenshot(path=output_dir / "dropped-imported.png")


def test_the_modal_traps_focus_and_escape_returns_to_import(page: Page, server, output_dir: Path):
    sign_in(page, server)
    page.get_by_role("button", name="Import", exact=True).focus()
    page.keyboard.press("Enter")
    modal = dialog(page)
    expect(modal).to_be_visible()
    expect(modal).to_have_attribute("aria-modal", "true")
    expect(modal).to_contain_text("5,000 records")
    expect(modal).to_contain_text("10 MB")
    expect(modal).to_contain_text("No scripts, macros, or executable content")
    template = modal.get_by_role("link", name="Download the CSV template")
    expect(template).to_have_attribute("download", "clients-template.csv")
    expect(template).to_have_attribute("href", "/clients-template.csv")

    inside = "() => document.getElementById('import-dialog').contains(document.activeElement)"
    seen = set()
    for _ in range(25):
        page.keyboard.press("Tab")
        assert page.evaluate(inside), "Tab left the dialog"
        seen.add(page.evaluate("() => document.activeElement.id || document.activeElement.textContent.trim()"))
    assert {"import-file", "import-dry-run", "import-mode"} <= seen
    for _ in range(25):
        page.keyboard.press("Shift+Tab")
        assert page.evaluate(inside), "Shift+Tab left the dialog"
    page.screenshot(path=output_dir / "modal-open.png")

    page.keyboard.press("Escape")
    expect(modal).to_be_hidden()
    expect(page.get_by_role("button", name="Import", exact=True)).to_be_focused()


def test_search_and_paging(page: Page, server, output_dir: Path, tmp_path: Path):
    tag = f"page{unique()}"
    rows = "\n".join(f"Person{n},{tag}{n:03}@example.com,,,Paged" for n in range(120))
    path = write_csv(tmp_path, f"paging-{tag}.csv", f"{HEADER}\n{rows}\n")
    sign_in(page, server)
    start_import(page, path)
    expect(dialog(page).locator("#outcome-text")).to_contain_text("120 created", timeout=PIPELINE_TIMEOUT_MS)
    page.keyboard.press("Escape")

    page.get_by_label("Search clients").fill(tag)
    expect(page.locator("#clients-range")).to_have_text("1–50 of 120")
    expect(page.locator("#clients-body tr")).to_have_count(50)
    expect(page.get_by_role("button", name="Previous")).to_be_disabled()
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#clients-range")).to_have_text("51–100 of 120")
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#clients-range")).to_have_text("101–120 of 120")
    expect(page.get_by_role("button", name="Next")).to_be_disabled()
    page.get_by_label("Search clients").fill(f"{tag}007@")
    expect(page.locator("#clients-range")).to_have_text("1–1 of 1")
    page.screenshot(path=output_dir / "search.png")


def test_the_page_is_usable_at_phone_width(page: Page, server, output_dir: Path, tmp_path: Path):
    page.set_viewport_size({"width": 390, "height": 844})
    tag = f"phone{unique()}"
    sign_in(page, server)
    import_button = page.get_by_role("button", name="Import", exact=True)
    expect(import_button).to_be_in_viewport()
    # Nothing spills past the screen's edge: wide tables scroll inside their own region.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    page.screenshot(path=output_dir / "phone-page.png")

    path = write_csv(tmp_path, f"phone-{tag}.csv", seed_example(tag))
    start_import(page, path)
    modal = dialog(page)
    expect(modal.get_by_role("heading", name="Import finished")).to_be_visible(timeout=PIPELINE_TIMEOUT_MS)
    box = modal.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390
    page.screenshot(path=output_dir / "phone-modal.png")
    modal.get_by_role("button", name="Done").click()
    expect(page.locator("#clients-body").get_by_text(f"{tag}1@example.com")).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    expect(toast_for(page, path.name)).to_be_in_viewport()
    page.screenshot(path=output_dir / "phone-after-import.png")
    page.get_by_role("heading", name="Recent imports").scroll_into_view_if_needed()
    page.screenshot(path=output_dir / "phone-recent-imports.png")


def test_readme_screenshots_of_the_modal_during_an_import_and_the_notification(page: Page, server, output_dir: Path, tmp_path: Path):
    tag = f"big{unique()}"
    rows = "\n".join(f"Client{n},{tag}{n:04}@example.com,,,Imported" for n in range(5000))
    path = write_csv(tmp_path, "clients.csv", f"{HEADER}\n{rows}\n")
    sign_in(page, server)
    start_import(page, path)

    modal = dialog(page)
    bar = modal.get_by_role("progressbar")
    progress = modal.locator("#progress-text")
    expect(progress).to_have_text(re.compile(r"Importing… [\d,]+ of 5,000 rows"), timeout=PIPELINE_TIMEOUT_MS)
    expect(bar).to_have_attribute("aria-valuemax", "5000")
    DOCS.mkdir(exist_ok=True)
    # animations="disabled" settles the bar's transition, so the picture shows the value in the text.
    page.screenshot(path=DOCS / "screenshot-import-modal.png", animations="disabled")
    # A shot with some rows done is a better picture, if the pipeline reports one before the end.
    for _ in range(200):
        text = progress.text_content() or ""
        if not progress.is_visible() or re.fullmatch(r"Importing… [1-9][\d,]* of 5,000 rows", text) and not text.startswith("Importing… 5,000"):
            break
        page.wait_for_timeout(20)
    if progress.is_visible():
        page.screenshot(path=DOCS / "screenshot-import-modal.png", animations="disabled")
    page.screenshot(path=output_dir / "import-modal.png", animations="disabled")

    expect(modal.locator("#outcome-text")).to_contain_text("5,000 created", timeout=PIPELINE_TIMEOUT_MS)
    modal.get_by_role("button", name="Done").click()
    toast = toast_for(page, path.name)
    expect(toast).to_contain_text(f"{path.name} imported: 5,000 created, 0 updated, 0 unchanged, 0 rejected.")
    page.mouse.move(0, 0)  # no row hover in the picture
    page.screenshot(path=DOCS / "screenshot-notification.png", animations="disabled")
    page.screenshot(path=output_dir / "notification.png")
    page.get_by_role("button", name=re.compile(r"^Notifications, \d+ new$")).click()
    expect(page.locator("#bell-list li").first).to_contain_text("5,000 created")
    page.screenshot(path=output_dir / "bell-open.png")


def test_closing_the_modal_keeps_the_import_going(page: Page, server, output_dir: Path, tmp_path: Path):
    tag = f"bg{unique()}"
    rows = "\n".join(f"Client{n},{tag}{n:04}@example.com,,,Background" for n in range(5000))
    path = write_csv(tmp_path, f"background-{tag}.csv", f"{HEADER}\n{rows}\n")
    sign_in(page, server)
    before = imports_running(page)
    start_import(page, path)
    # Close at once, while the file is still on its way: the page keeps following the job.
    dialog(page).get_by_role("button", name="Close and keep working").click()
    expect(dialog(page)).to_be_hidden()
    expect(page.get_by_role("button", name="Import", exact=True)).to_be_focused()
    expect(page.locator("#running")).to_have_text(running_text(before + 1))
    page.screenshot(path=output_dir / "running-in-background.png")
    toast = toast_for(page, path.name)
    expect(toast).to_contain_text("5,000 created", timeout=PIPELINE_TIMEOUT_MS)
    expect(page.locator("#running")).to_have_text(running_text(before))
    expect(page.locator("#history-body tr").filter(has_text=path.name)).to_contain_text("Completed")
    page.get_by_label("Search clients").fill(f"{tag}4999@")
    expect(page.locator("#clients-range")).to_have_text("1–1 of 1")
    page.screenshot(path=output_dir / "background-done.png")
    # The toast stays, but an import modal opened now is over it: the toast never covers the modal's buttons.
    page.get_by_role("button", name="Import", exact=True).click()
    expect(dialog(page)).to_be_visible()
    covered = page.evaluate("""() => {
        const box = document.querySelector('.toast').getBoundingClientRect();
        const top = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
        return !!top.closest('.toast');
    }""")
    assert not covered


def test_progress_updates_do_not_move_the_layout(page: Page, server, tmp_path: Path):
    tag = f"steady{unique()}"
    rows = "\n".join(f"Client{n},{tag}{n:04}@example.com,,,Steady" for n in range(5000))
    path = write_csv(tmp_path, f"steady-{tag}.csv", f"{HEADER}\n{rows}\n")
    # The real pipeline may finish 5,000 rows between two polls; to judge the layout at every stage,
    # the first status answers are replaced by a scripted climb, then the real answers go through.
    script = [0, 1, 999, 2500, 4999]
    answers = iter(script)

    def scripted(route):
        response = route.fetch()
        job = response.json()
        step = next(answers, None) if job.get("file_name") == path.name else None
        if step is not None:
            job |= {"status": "processing", "total": 5000, "processed": step, "created": step}
        route.fulfill(response=response, json=job)

    page.route(re.compile(r".*/imports/[0-9a-f-]+$"), scripted)
    sign_in(page, server)
    start_import(page, path)
    # The upload starts once the server's preview has read the file's columns.
    expect(page.locator("#progress-view")).to_be_visible()
    samples = []
    boxes = set()
    for _ in range(600):
        state = page.evaluate("""() => {
            const view = document.getElementById('progress-view');
            if (view.hidden) return null;
            const box = (id) => JSON.stringify(document.getElementById(id).getBoundingClientRect());
            const bar = document.getElementById('progress-bar');
            return [document.getElementById('progress-text').textContent, bar.getAttribute('aria-valuenow'),
                    box('import-dialog'), box('progress-bar'), box('progress-text')];
        }""")
        if state is None:
            break
        if not samples or samples[-1] != state[:2]:
            samples.append(state[:2])
        boxes.add(tuple(state[2:]))
        page.wait_for_timeout(20)
    texts = [text for text, _ in samples]
    assert "Importing… 2,500 of 5,000 rows" in texts, texts
    assert ["Importing… 2,500 of 5,000 rows", "2500"] in samples, "aria-valuenow follows the rows done"
    assert len(boxes) == 1, f"the layout moved while progress updated: {boxes}"
    expect(dialog(page).locator("#outcome-text")).to_contain_text("5,000 created", timeout=PIPELINE_TIMEOUT_MS)


def test_the_mode_options_are_the_settings_modes(page: Page, server, output_dir: Path):
    sign_in(page, server)
    base_url, _ = server
    modes = page.request.get(f"{base_url}/settings").json()["modes"]
    assert modes, "GET /settings lists the modes"
    page.get_by_role("button", name="Import", exact=True).click()
    modal = dialog(page)
    select = modal.get_by_label("When a client already exists")
    expect(select.locator("option")).to_have_count(len(modes))
    shown = select.locator("option").evaluate_all("options => options.map(o => [o.value, o.textContent])")
    assert shown == [[m["value"], m["label"]] for m in modes]
    default = [m["value"] for m in modes if m["default"]]
    assert len(default) == 1
    expect(select).to_have_value(default[0])
    page.screenshot(path=output_dir / "modes.png")


def test_a_history_row_shows_the_status_label_from_settings(page: Page, server, output_dir: Path, tmp_path: Path):
    # The labels and headings are marked on their way in, so only text read from /settings can match.
    def marked(route):
        response = route.fetch()
        settings = response.json()
        for status in settings["statuses"]:
            status["label"] = f"{status['label']} [settings]"
            status["heading"] = f"{status['heading']} [settings]"
        route.fulfill(response=response, json=settings)

    page.route(re.compile(r".*/settings$"), marked)
    tag = f"label{unique()}"
    path = write_csv(tmp_path, f"labels-{tag}.csv", seed_example(tag))
    sign_in(page, server)
    base_url, _ = server
    statuses = {s["value"]: s for s in page.request.get(f"{base_url}/settings").json()["statuses"]}
    start_import(page, path)
    modal = dialog(page)
    expect(modal.locator("#outcome-text")).to_contain_text("2 created", timeout=PIPELINE_TIMEOUT_MS)
    expect(modal.locator("#outcome-heading")).to_have_text(re.compile(r"\S \[settings\]$"))
    modal.get_by_role("button", name="Done").click()

    badge = page.locator("#history-body tr").filter(has_text=path.name).locator(".badge-status")
    expect(badge).to_have_attribute("data-status", re.compile(r"."))
    status = statuses[badge.get_attribute("data-status")]
    assert not status["running"]
    expect(badge).to_have_text(f"{status['label']} [settings]")
    expect(badge).to_have_class(re.compile(rf"\btone-{status['tone']}\b"))
    badge.scroll_into_view_if_needed()
    page.screenshot(path=output_dir / "history-label.png")
