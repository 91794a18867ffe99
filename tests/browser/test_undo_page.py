"""Undoing an import from the imports history: a confirmation in numbers, then the undo's notification."""

import csv
import io
from pathlib import Path

from playwright.sync_api import Page, expect

from .test_clients_page import HEADER, PIPELINE_TIMEOUT_MS, dialog, sign_in, start_import, toast_for, unique, write_csv


def imported(page: Page, path: Path) -> None:
    start_import(page, path)
    modal = dialog(page)
    expect(modal.get_by_role("heading", name="Import finished")).to_be_visible(timeout=PIPELINE_TIMEOUT_MS)
    modal.get_by_role("button", name="Done").click()
    expect(modal).to_be_hidden()
    dismiss_toasts(page)


def dismiss_toasts(page: Page) -> None:
    """Toasts stay until dismissed, and sit over the page's lower right: out of the way of the next click."""
    closes = page.get_by_role("button", name="Dismiss notification")
    expect(closes.first).to_be_visible()
    while closes.count():
        closes.first.click()


def history_row(page: Page, name: str):
    return page.locator("#history-body tr").filter(has_text=name)


def undo_from_history(page: Page, name: str, says: str) -> None:
    history_row(page, name).get_by_role("button", name="Undo import").click()
    confirmation = page.get_by_role("dialog", name=f"Undo the import of {name}?")
    expect(confirmation).to_be_visible()
    expect(confirmation).to_contain_text(says)
    confirmation.get_by_role("button", name="Undo import").click()
    expect(confirmation).to_have_count(0)


def test_an_import_is_undone_from_the_history_with_a_confirmation_that_says_the_numbers(
        page: Page, server, output_dir: Path, tmp_path: Path):
    tag = f"undo{unique()}"
    first = write_csv(tmp_path, f"first-{tag}.csv",
                      f"{HEADER}\nAnn,{tag}ann@example.com,,,Lee\nBob,{tag}bob@example.com,,,Ray\n")
    second = write_csv(tmp_path, f"second-{tag}.csv",
                       f"{HEADER}\nRobert,{tag}bob@example.com,,,\nCat,{tag}cat@example.com,,,Cole\n")
    sign_in(page, server)
    imported(page, first)
    imported(page, second)
    clients = page.locator("#clients-body")

    # Undo the first import while the second (which changed Bob since) stands: Ann goes, Bob is a conflict.
    history_row(page, first.name).get_by_role("button", name="Undo import").click()
    confirmation = page.get_by_role("dialog", name=f"Undo the import of {first.name}?")
    expect(confirmation).to_contain_text("This will delete the 2 clients it created.")
    page.screenshot(path=output_dir / "undo-confirmation.png")
    confirmation.get_by_role("button", name="Cancel").click()  # nothing done yet
    expect(confirmation).to_have_count(0)
    expect(clients.get_by_text(f"{tag}ann@example.com")).to_be_visible()

    undo_from_history(page, first.name, "This will delete the 2 clients it created.")
    toast = toast_for(page, f"Undid the import of {first.name}")
    expect(toast).to_contain_text("Undo finished", timeout=PIPELINE_TIMEOUT_MS)
    expect(toast).to_contain_text("1 client deleted, 0 restored, 0 already as before, 1 changed since and kept as it is",
                                  timeout=PIPELINE_TIMEOUT_MS)
    page.screenshot(path=output_dir / "undo-notification.png")
    with page.expect_download() as download_info:
        toast.get_by_role("link", name="Download conflicts.csv").click()
    saved = output_dir / download_info.value.suggested_filename
    download_info.value.save_as(saved)
    assert download_info.value.suggested_filename == f"first-{tag}-conflicts.csv"
    rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
    assert [(r["email"], r["field"], r["now"]) for r in rows] == [(f"{tag}bob@example.com", "first_name", "Robert")]
    expect(clients.get_by_text(f"{tag}ann@example.com")).to_have_count(0)
    expect(history_row(page, first.name).locator(".tag", has_text="undone")).to_be_visible()
    expect(history_row(page, first.name).get_by_role("button", name="Undo import")).to_have_count(0)
    dismiss_toasts(page)

    # Undo the second: Bob gets his first name back, Cat goes.
    undo_from_history(page, second.name, "delete the 1 client it created and give the 1 client it updated their "
                                         "earlier values back")
    toast = toast_for(page, f"Undid the import of {second.name}")
    expect(toast).to_contain_text("1 client deleted, 1 restored", timeout=PIPELINE_TIMEOUT_MS)
    expect(clients.locator("tr").filter(has_text=f"{tag}bob@example.com")).to_contain_text("Bob Ray")
    expect(clients.get_by_text(f"{tag}cat@example.com")).to_have_count(0)
