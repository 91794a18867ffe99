"""The import modal's mapping step in Chromium: a file whose header names no field is mapped column by column,
previewed as the server's reader and rules see it, saved as a mapping and imported; the next file of the same
shape is offered the saved mapping. Each test works on its own emails and mapping names (one server for all)."""

import json
import re
from pathlib import Path

from playwright.sync_api import Page, expect

from .test_clients_page import DOCS, PIPELINE_TIMEOUT_MS, dialog, sign_in, unique, write_csv

PHONE = {"width": 390, "height": 844}


def partner_file(tag: str, *people: str) -> str:
    return "Vorname,Nachname,Mail,Notiz\n" + "".join(f"{p}\n" for p in people)


def attach_and_start(page: Page, path: Path) -> None:
    modal = dialog(page)
    modal.get_by_label("Attach file").set_input_files(path)
    expect(modal.get_by_text(f"Attached: {path.name}")).to_be_visible()
    modal.get_by_role("button", name="Start import").click()


def test_a_partner_file_is_mapped_previewed_saved_imported_and_its_mapping_offered_for_the_next(
        page: Page, server, output_dir: Path, tmp_path: Path):
    tag = unique()
    name = f"partner-{tag}"
    first = write_csv(tmp_path, f"partner-{tag}.csv", partner_file(
        tag, f"Ann,Lee,ann-{tag}@example.com,call", f"Bob,Ray,bob-{tag}@example.com,", f"Cid,=1+1,cid-{tag}@nowhere,x"))
    sign_in(page, server)
    page.get_by_role("button", name="Import", exact=True).click()
    attach_and_start(page, first)

    modal = dialog(page)
    expect(modal.get_by_role("heading", name=f"Match the columns of {first.name}")).to_be_focused()
    # every column with its first values; nothing recognised, so each is ignored and the required fields are missing
    expect(modal.locator("#map-samples-0")).to_have_text(re.compile("Ann.*Bob.*Cid"))
    expect(modal.locator("#map-state-3")).to_have_text("Ignored: not imported")
    missing = modal.locator("#map-missing")
    expect(missing).to_have_text(re.compile(r"Still missing: first name \(the column “Vorname” looks like it\); "
                                            r"email \(the column “Mail” looks like it\)"))
    page.screenshot(path=output_dir / "mapping-step-unmapped.png")
    # the server decides: previewing before the required fields have columns says what is missing, here
    modal.get_by_role("button", name="Preview rows").click()
    expect(modal.locator("#map-error")).to_contain_text('"email" is missing; the column "Mail" looks like it')
    expect(modal.locator("#map-error")).to_be_focused()

    modal.get_by_label("Vorname", exact=True).select_option(label="first name (required)")
    expect(missing).to_contain_text("Still missing: email")
    modal.get_by_label("Nachname", exact=True).select_option(label="last name")
    modal.get_by_label("Mail", exact=True).select_option(label="email (required)")
    expect(missing).to_have_text("Every required field has a column.")
    expect(modal.locator("#map-error")).to_be_hidden()
    expect(modal.locator("#map-state-0")).to_have_text("Your choice")
    expect(modal.locator("#map-state-3")).to_have_text("Ignored: not imported")

    modal.get_by_label("Save these choices as a mapping named").fill(name)
    modal.get_by_role("button", name="Save mapping").click()
    expect(modal.locator("#map-save-status")).to_have_text(f"Saved as “{name}” (version 1). It is offered for your next file.")
    expect(modal.get_by_label("Saved mapping", exact=True)).to_have_value(name)
    page.screenshot(path=output_dir / "mapping-step-mapped.png")
    page.screenshot(path=DOCS / "screenshot-mapping-step.png", animations="disabled")

    modal.get_by_role("button", name="Preview rows").click()
    expect(modal.get_by_role("heading", name=f"Check {first.name}")).to_be_focused()
    expect(modal.locator("#check-summary")).to_have_text(
        "3 rows in the file, shown as they will be imported: 1 of them has a problem and would be rejected.")
    rows = modal.locator("#check-body tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text(f"ann-{tag}@example.com")
    rejected = rows.nth(2)
    expect(rejected).to_have_class("rejected")
    # each cell's problem marked where it is: the formula in the last name, the address without a real domain
    expect(rejected.locator("td.problem")).to_have_text([re.compile(f"cid-{tag}@nowhere"), re.compile("=1\\+1")])
    expect(rejected).to_contain_text("spreadsheet would run")
    # the dry run's counts, when the pipeline has checked every row
    counts = modal.locator("#check-counts")
    expect(counts).to_be_visible(timeout=PIPELINE_TIMEOUT_MS)
    expect(counts.locator(".count").filter(has_text="Would be created")).to_contain_text("2")
    expect(counts.locator(".count").filter(has_text="Rejected")).to_contain_text("1")
    page.screenshot(path=output_dir / "mapping-step-preview.png")
    page.screenshot(path=DOCS / "screenshot-mapping-preview.png", animations="disabled")

    modal.get_by_role("button", name="Import", exact=True).click()
    expect(modal.locator("#outcome-text")).to_have_text(
        f"{first.name} imported: 2 created, 0 updated, 0 unchanged, 1 rejected.", timeout=PIPELINE_TIMEOUT_MS)
    expect(page.locator("#clients-body").get_by_text(f"ann-{tag}@example.com")).to_be_visible()

    # The next file of the same shape: the saved mapping is offered, and taken in one click.
    second = write_csv(tmp_path, f"partner-{tag}-2.csv", partner_file(tag, f"Dee,Fox,dee-{tag}@example.com,"))
    modal.get_by_role("button", name="Import another file").click()
    attach_and_start(page, second)
    offer = modal.locator("#map-offer")
    expect(offer).to_contain_text(f"The saved mapping “{name}” fits this file's columns.")
    page.screenshot(path=output_dir / "mapping-offered.png")
    offer.get_by_role("button", name=f"Use the saved mapping {name}").click()
    expect(modal.get_by_label("Saved mapping", exact=True)).to_have_value(name)
    expect(modal.locator("#map-state-2")).to_have_text(f"From the mapping “{name}”")
    expect(missing).to_have_text("Every required field has a column.")
    modal.get_by_role("button", name="Preview rows").click()
    expect(modal.locator("#check-body tr")).to_have_count(1)
    modal.get_by_role("button", name="Import", exact=True).click()
    expect(modal.locator("#outcome-text")).to_have_text(
        f"{second.name} imported: 1 created, 0 updated, 0 unchanged, 0 rejected.", timeout=PIPELINE_TIMEOUT_MS)

    jobs = page.request.get(f"{server[0]}/imports?limit=20").json()["items"]
    applied = next(j for j in jobs if j["file_name"] == second.name and not j["dry_run"])["mapping"]
    assert (applied["name"], applied["version"]) == (name, 1)


def test_a_file_whose_header_matches_is_imported_at_once_and_can_still_be_reviewed(page: Page, server, tmp_path: Path):
    tag = unique()
    path = write_csv(tmp_path, f"outlook-{tag}.csv",
                     f"First Name,Last Name,E-mail Address,Business Phone\nAnn,Lee,ann-{tag}@example.com,555\n")
    sign_in(page, server)
    page.get_by_role("button", name="Import", exact=True).click()
    modal = dialog(page)
    modal.get_by_label("Attach file").set_input_files(path)
    modal.get_by_role("button", name="Match columns first").click()

    expect(modal.locator("#map-state-0")).to_have_text("Recognised from its name")
    expect(modal.locator("#map-state-3")).to_have_text("Ignored: not imported")
    expect(modal.locator("#map-missing")).to_have_text("Every required field has a column.")
    modal.get_by_role("button", name="Back").click()
    expect(modal.get_by_role("button", name="Match columns first")).to_be_focused()
    modal.get_by_role("button", name="Start import").click()  # no mapping step: straight in
    expect(modal.locator("#outcome-text")).to_have_text(
        f"{path.name} imported: 1 created, 0 updated, 0 unchanged, 0 rejected.", timeout=PIPELINE_TIMEOUT_MS)


def test_the_mapping_step_works_by_keyboard_and_at_phone_width(page: Page, server, output_dir: Path, tmp_path: Path):
    tag = unique()
    # a header of its own: no mapping another test saved fits it, so nothing is offered before the columns
    path = write_csv(tmp_path, f"phone-{tag}.csv", f"Vorname,Mail\nAnn,ann-{tag}@example.com\n")
    page.set_viewport_size(PHONE)
    sign_in(page, server)
    page.get_by_role("button", name="Import", exact=True).click()
    attach_and_start(page, path)
    modal = dialog(page)
    expect(modal.get_by_role("heading", name=f"Match the columns of {path.name}")).to_be_focused()

    # Tab reaches the saved-mapping chooser, then the first column's field; arrow keys choose in it
    page.keyboard.press("Tab")
    expect(modal.get_by_label("Saved mapping", exact=True)).to_be_focused()
    page.keyboard.press("Tab")
    expect(modal.get_by_label("Vorname", exact=True)).to_be_focused()
    modal.get_by_label("Vorname", exact=True).select_option(label="first name (required)")
    modal.get_by_label("Mail", exact=True).select_option(label="email (required)")
    expect(modal.locator("#map-missing")).to_have_text("Every required field has a column.")
    width = page.evaluate("document.getElementById('import-dialog').scrollWidth")
    assert width <= PHONE["width"], f"the mapping step is {width}px wide at phone width"
    page.screenshot(path=output_dir / "mapping-step-phone.png")

    modal.get_by_role("button", name="Preview rows").click()
    expect(modal.locator("#check-body tr")).to_have_count(1)
    expect(modal.locator("#check-summary")).to_have_text("1 row in the file, shown as it will be imported.")
    expect(modal.locator("#check-counts")).to_be_visible(timeout=PIPELINE_TIMEOUT_MS)
    width = page.evaluate("document.getElementById('import-dialog').scrollWidth")
    assert width <= PHONE["width"], f"the preview is {width}px wide at phone width"
    page.screenshot(path=output_dir / "mapping-preview-phone.png")
    page.keyboard.press("Escape")
    expect(modal).to_be_hidden()


def form_field(request, name: str) -> str | None:
    """A field's value in a multipart request the page sent."""
    body = (request.post_data_buffer or b"").decode("utf-8", "replace")
    found = re.search(rf'name="{name}"\r\n\r\n(.*?)\r\n--', body, re.DOTALL)
    return found.group(1) if found else None


def test_while_rows_are_previewed_the_choices_wait_and_the_import_sends_the_choice_previewed(
        page: Page, server, tmp_path: Path):
    tag = unique()
    path = write_csv(tmp_path, f"inflight-{tag}.csv", f"Vorname,Mail,Notiz\nAnn,ann-{tag}@example.com,x\n")
    sign_in(page, server)
    page.get_by_role("button", name="Import", exact=True).click()
    attach_and_start(page, path)
    modal = dialog(page)
    modal.get_by_label("Vorname", exact=True).select_option(label="first name (required)")
    modal.get_by_label("Mail", exact=True).select_option(label="email (required)")
    held, imports = [], []
    page.route("**/imports/preview", lambda route: held.append(route))  # answered when the test says
    page.on("request", lambda r: imports.append(r) if r.method == "POST" and r.url.endswith("/imports") else None)

    modal.get_by_role("button", name="Preview rows").dblclick()  # a repeated click starts one preview
    # while it is under way, nothing of the step can be changed
    expect(modal.get_by_label("Vorname", exact=True)).to_be_disabled()
    expect(modal.get_by_label("Notiz", exact=True)).to_be_disabled()
    expect(modal.get_by_label("Saved mapping", exact=True)).to_be_disabled()
    expect(modal.get_by_role("button", name="Preview rows")).to_be_disabled()
    page.wait_for_timeout(300)  # time for a second preview to be asked, if one were
    assert len(held) == 1, f"{len(held)} previews started"
    previewed = form_field(held[0].request, "column_map")
    held[0].continue_()

    expect(modal.locator("#check-body tr")).to_have_count(1)
    expect(modal.locator("#check-counts")).to_be_visible(timeout=PIPELINE_TIMEOUT_MS)
    modal.get_by_role("button", name="Import", exact=True).click()
    expect(modal.locator("#outcome-text")).to_have_text(
        f"{path.name} imported: 1 created, 0 updated, 0 unchanged, 0 rejected.", timeout=PIPELINE_TIMEOUT_MS)
    # the dry run and the import: each with the very map previewed
    assert [form_field(r, "column_map") for r in imports] == [previewed, previewed]
    assert json.loads(previewed) == {"Vorname": "firstName", "Mail": "email"}


def test_a_column_named_proto_is_mapped_like_any_other(page: Page, server, tmp_path: Path):
    tag = unique()
    path = write_csv(tmp_path, f"proto-{tag}.csv", f"__proto__,Mail\nAnn,ann-{tag}@example.com\n")
    sign_in(page, server)
    page.get_by_role("button", name="Import", exact=True).click()
    attach_and_start(page, path)
    modal = dialog(page)
    modal.get_by_label("__proto__", exact=True).select_option(label="first name (required)")
    modal.get_by_label("Mail", exact=True).select_option(label="email (required)")
    modal.get_by_role("button", name="Preview rows").click()

    expect(modal.locator("#check-summary")).to_have_text("1 row in the file, shown as it will be imported.")
    expect(modal.locator("#check-body tr").first).to_contain_text("Ann")


def test_a_file_as_wide_as_the_import_takes_is_mapped_from_the_page(page: Page, server, tmp_path: Path):
    """300 columns of 190-character names: their whole map is past the form's column_map bound; only the columns
    whose field the server would not find by itself are sent."""
    tag = unique()
    wide = [f"Extra column {i:03d} " + "x" * 173 for i in range(300)]
    path = write_csv(tmp_path, f"wide-{tag}.csv", ",".join(["Vorname", "Mail", *wide]) + "\n"
                     + ",".join(["Ann", f"ann-{tag}@example.com", *["v"] * 300]) + "\n")
    sign_in(page, server)
    page.get_by_role("button", name="Import", exact=True).click()
    attach_and_start(page, path)
    modal = dialog(page)
    modal.get_by_label("Vorname", exact=True).select_option(label="first name (required)")
    modal.get_by_label("Mail", exact=True).select_option(label="email (required)")
    modal.get_by_role("button", name="Preview rows").click()

    expect(modal.locator("#check-summary")).to_have_text("1 row in the file, shown as it will be imported.")
    modal.get_by_role("button", name="Import", exact=True).click()
    expect(modal.locator("#outcome-text")).to_have_text(
        f"{path.name} imported: 1 created, 0 updated, 0 unchanged, 0 rejected.", timeout=PIPELINE_TIMEOUT_MS)
