"""Fix rows: an import's rejected rows fixed in a grid on the page and imported again as a retry."""

import re
from pathlib import Path

from playwright.sync_api import Page, expect

from .test_clients_page import PIPELINE_TIMEOUT_MS, dialog, sign_in, start_import, toast_for, unique, write_csv
from .test_undo_page import dismiss_toasts, history_row, undo_from_history


def import_with_two_rejected_rows(page: Page, server, tmp_path: Path) -> tuple[str, Path]:
    tag = f"fix{unique()}"
    text = (f"firstName,email,lastName\n"
            f"Ann,{tag}a@example.com,Lee\n"
            f"Bob,{tag}b@,Ray\n"
            f",{tag}c@example.com,Lu\n")
    path = write_csv(tmp_path, f"people-{tag}.csv", text)
    sign_in(page, server)
    start_import(page, path)
    modal = dialog(page)
    expect(modal.get_by_role("heading", name=re.compile("some rows were rejected"))).to_be_visible(
        timeout=PIPELINE_TIMEOUT_MS)
    modal.get_by_role("button", name="Done").click()
    return tag, path


def edit(page: Page, key_path: list[str], text: str) -> None:
    """Move with the arrow keys, Enter to edit, type, Enter to keep."""
    for key in key_path:
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_two_cells_fixed_in_the_grid_are_imported_and_become_clients(page: Page, server, tmp_path: Path):
    tag, path = import_with_two_rejected_rows(page, server, tmp_path)
    toast_for(page, path.name).get_by_role("button", name="Fix rows").click()

    grid = page.get_by_role("dialog", name=f"Fix rows of {path.name}")
    expect(grid.get_by_role("grid", name="Rejected rows")).to_be_visible()
    expect(grid.get_by_role("rowheader")).to_have_text(["2", "3"])
    email = grid.locator('td[data-r="0"][data-c="2"]')
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_contain_text("not a valid email address")
    page.screenshot(path="/tmp/fix-rows-grid.png")

    # Focus starts on row 2's first cell. A half-typed email is flagged as it is typed; Escape cancels the edit.
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    page.keyboard.press("Control+A")
    page.keyboard.type(f"{tag}b@example")
    expect(email.locator(".cell-problem")).to_have_text("This does not look like an email address.")
    page.screenshot(path="/tmp/fix-rows-typing.png")
    page.keyboard.press("Escape")
    expect(grid).to_be_visible()
    expect(email.locator(".cell-value")).to_have_text(f"{tag}b@")

    edit(page, [], f"{tag}b@example.com")
    expect(email).not_to_have_attribute("aria-invalid", "true")
    name = grid.locator('td[data-r="1"][data-c="1"]')
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Tab")  # out of the grid to its buttons, and back to the cell it left
    page.keyboard.press("Shift+Tab")
    expect(name).to_be_focused()
    page.keyboard.press("Enter")
    expect(name.locator(".cell-problem")).to_contain_text("is required")
    page.keyboard.type("Cy")
    page.keyboard.press("Enter")
    expect(name.locator(".cell-value")).to_have_text("Cy")
    page.screenshot(path="/tmp/fix-rows-edited.png")

    grid.get_by_role("button", name="Import fixed rows").click()
    status = grid.locator(".fix-status")
    expect(status).to_contain_text("2 created, 0 updated, 0 unchanged, 0 rejected", timeout=PIPELINE_TIMEOUT_MS)
    expect(status).to_contain_text("no rejected rows left to retry", timeout=PIPELINE_TIMEOUT_MS)
    page.screenshot(path="/tmp/fix-rows-done.png")
    page.keyboard.press("Escape")
    expect(grid).to_be_hidden()

    expect(toast_for(page, f"{path.stem}-fixes.csv")).to_contain_text("2 created")
    clients = page.locator("#clients-body")
    expect(clients.get_by_text(f"{tag}b@example.com")).to_be_visible()
    expect(clients.locator("tr").filter(has_text=f"{tag}c@example.com")).to_contain_text("Cy")


def test_the_grid_is_usable_at_phone_width(page: Page, server, tmp_path: Path):
    page.set_viewport_size({"width": 390, "height": 844})
    _, path = import_with_two_rejected_rows(page, server, tmp_path)
    toast_for(page, path.name).get_by_role("button", name="Dismiss notification").click()  # it covers the list
    page.get_by_role("heading", name="Recent imports").scroll_into_view_if_needed()
    page.locator("#history-body tr").filter(has_text=path.name).get_by_role("button", name="Fix rows").click()

    grid = page.get_by_role("dialog", name=f"Fix rows of {path.name}")
    expect(grid.get_by_role("grid")).to_be_visible()
    box = grid.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390
    expect(grid.get_by_role("button", name="Import fixed rows")).to_be_in_viewport(ratio=1)
    assert grid.evaluate("node => node.scrollWidth <= node.clientWidth"), "the grid scrolls in its region, not the dialog"
    page.screenshot(path="/tmp/fix-rows-phone.png")


def test_an_undone_import_offers_no_fix_rows(page: Page, server, tmp_path: Path):
    _, path = import_with_two_rejected_rows(page, server, tmp_path)
    dismiss_toasts(page)
    row = history_row(page, path.name)
    expect(row.get_by_role("button", name="Fix rows")).to_be_visible()

    undo_from_history(page, path.name, "delete the 1 client it created")
    expect(row.locator(".tag", has_text="undone")).to_be_visible(timeout=PIPELINE_TIMEOUT_MS)
    expect(row.get_by_role("button", name="Fix rows")).to_have_count(0)
