"""Files whose header names no field we know, imported on the real broker and database: with a column map on
each front door (the topic, the API, the command line), and with a saved mapping named on the topic, whose
next version the next import uses."""

import csv
import io
import json

import httpx

from shared.db import create_engine

from ..conftest import API_TOKEN
from .command_line import operator_env, run_cli
from .conftest import clients_of, unique_domain
from .test_api import poll, upload

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
PARTNER_MAP = {"Vorname": "firstName", "Nachname": "lastName", "Mail": "email", "Notiz": None}


def partner_file(d: str) -> str:
    return f"Vorname,Nachname,Mail,Notiz\nAnn,Lee,ann@{d},hi\nBob,Ray,bob@{d},\n"


async def test_a_column_map_on_the_topic_imports_a_file_no_alias_matches(partner, engine):
    d = unique_domain()

    refused = await partner.run(partner_file(d))
    note = await partner.run(partner_file(d), column_map=PARTNER_MAP)

    assert refused.status == "rejected" and '"email" is missing; the column "Mail" looks like it' in refused.reason.message
    assert (note.status, note.created) == ("completed", 2)
    assert note.mapping.columns == PARTNER_MAP
    assert note.mapping.fields == {"firstName": "Vorname", "lastName": "Nachname", "email": "Mail"}
    stored = await clients_of(engine, d)
    assert (stored[f"ann@{d}"]["first_name"], stored[f"ann@{d}"]["last_name"]) == ("Ann", "Lee")


async def test_a_map_that_does_not_fit_is_refused_on_the_topic_and_imports_nothing(partner, engine):
    d = unique_domain()

    note = await partner.run(partner_file(d), column_map={"Mial": "email", "Vorname": "firstName"})

    assert (note.status, note.reason.code) == ("rejected", "invalid_column_map")
    assert "the file has no column “Mial”" in note.reason.message
    assert await clients_of(engine, d) == {}


async def test_a_column_map_on_the_api_imports_and_errors_csv_keeps_the_file_s_own_header(api, engine):
    d = unique_domain()
    text = f"Vorname,Nachname,Mail,Notiz\nAnn,Lee,ann@{d},hi\nBob,=1+1,bob@{d},x\n"
    async with httpx.AsyncClient(base_url=api) as http:
        bad_json = await upload(http, text, column_map="{not json")
        answer = await upload(http, text, column_map=json.dumps(PARTNER_MAP))
        assert answer.status_code == 202, answer.text
        job = await poll(http, answer.json()["status_url"])
        report = (await http.get(job["links"]["errors_csv"], headers=AUTH)).text

    assert (bad_json.status_code, bad_json.json()["code"]) == (422, "invalid_json")
    assert (job["status"], job["created"], job["rejected"]) == ("completed_with_errors", 1, 1)
    assert job["mapping"]["columns"] == PARTNER_MAP and job["mapping"]["fields"]["email"] == "Mail"
    rows = list(csv.DictReader(io.StringIO(report.lstrip("\ufeff"))))
    assert list(rows[0])[:4] == ["Vorname", "Nachname", "Mail", "Notiz"]
    assert rows[0]["Nachname"] == "'=1+1"
    assert list(await clients_of(engine, d)) == [f"ann@{d}"]


async def test_a_column_map_on_the_command_line(settings, tmp_path):
    d = unique_domain()
    path = tmp_path / "partner.csv"
    path.write_text(partner_file(d))
    # `run` as an operator runs it on one machine: no broker configured, so it starts its own for the run
    # (its pipeline must never join the session pipeline's consumer groups), into a database of its own.
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    env = operator_env(settings, DATABASE_URL=database_url)
    env.pop("KAFKA_BOOTSTRAP_SERVERS")

    code, out, err, _ = await run_cli(env, "run", str(path), "--json", "--map", "Vorname=firstName",
                                      "--map", "Nachname=lastName", "--map", "Mail=email", "--map", "Notiz=",
                                      timeout=150)

    assert code == 0, err[-2000:]
    note = json.loads(out.splitlines()[-1])
    assert (note["status"], note["created"]) == ("completed", 2)
    assert note["mapping"]["columns"] == PARTNER_MAP
    engine = create_engine(database_url)
    try:
        assert (await clients_of(engine, d))[f"bob@{d}"]["last_name"] == "Ray"
    finally:
        await engine.dispose()


async def test_a_saved_mapping_named_on_the_topic_and_then_changed_is_used_in_its_newest_version(api, partner, engine):
    d = unique_domain()
    name = f"partner-{d[:11]}"
    async with httpx.AsyncClient(base_url=api, headers=AUTH) as http:
        unknown = await partner.run(partner_file(d), mapping=name)
        first = (await http.put(f"/mappings/{name}", json={"columns": PARTNER_MAP})).json()
        used = await partner.run(partner_file(d), mapping=name)

        # The partner's system renames its columns; the mapping follows, and the next import uses it.
        changed = (await http.put(f"/mappings/{name}", json={"columns": {"Given": "firstName", "EMailAdr": "email",
                                                                          "Surname2": "lastName"}})).json()
        renamed = f"Given,Surname2,EMailAdr\nCid,Moss,cid@{d}\n"
        next_one = await partner.run(renamed, mapping=name)
        overridden = await partner.run(f"Given,Surname2,EMailAdr,Other\nDee,Lane,dee@{d},Dee Lane\n", mapping=name,
                                       column_map={"Surname2": None})

    assert (unknown.status, unknown.reason.code) == ("rejected", "unknown_mapping")
    assert (first["version"], changed["version"]) == (1, 2)
    assert (used.status, used.created, used.mapping.name, used.mapping.version) == ("completed", 2, name, 1)
    assert (next_one.status, next_one.created, next_one.mapping.version) == ("completed", 1, 2)
    assert (overridden.status, overridden.mapping.columns["Surname2"]) == ("completed", None)
    stored = await clients_of(engine, d)
    assert (stored[f"cid@{d}"]["first_name"], stored[f"cid@{d}"]["last_name"]) == ("Cid", "Moss")
    assert stored[f"dee@{d}"]["last_name"] is None


async def test_an_outlook_export_and_a_whole_name_column_import_with_no_editing(partner, engine):
    d = unique_domain()

    note = await partner.run(f"Full Name,E-mail Address,Phone\nAnn Marie Lee,ann@{d},555\n\"Ray, Bob\",bob@{d},\n")

    assert (note.status, note.created) == ("completed", 2)
    assert note.mapping.fields == {"fullName": "Full Name", "email": "E-mail Address"}
    stored = await clients_of(engine, d)
    assert (stored[f"ann@{d}"]["first_name"], stored[f"ann@{d}"]["middle_name"], stored[f"ann@{d}"]["last_name"]) == (
        "Ann", "Marie", "Lee")
    assert (stored[f"bob@{d}"]["first_name"], stored[f"bob@{d}"]["last_name"]) == ("Bob", "Ray")



async def test_what_the_preview_shows_is_what_a_dry_run_of_the_same_file_does(api, engine):
    """The page shows the preview before a person confirms: every row it marks rejected, with each problem, is
    what the pipeline rejects, and every row it accepts the pipeline accepts."""
    d = unique_domain()
    text = (f"Vorname,Nachname,Mail,Typ,Notiz\nAnn,Lee,ann@{d},,=1+1\nBob,=2+2,bob@{d},,\n,Ray,nofirst@{d},,\n"
            f"Cid,Fox,not-an-email,,\nDee,Kim,ANN@{d},,\nEve,Ng,eve@{d},wholesale,\nFay,O,fay@{d},corporate,\n")
    column_map = json.dumps({**PARTNER_MAP, "Typ": "type"})
    async with httpx.AsyncClient(base_url=api) as http:
        shown = (await http.post("/imports/preview", files={"file": ("partner.csv", text.encode(), "text/csv")},
                                 data={"column_map": column_map}, headers=AUTH)).json()
        answer = await upload(http, text, column_map=column_map, dry_run="true")
        job = await poll(http, answer.json()["status_url"])

    rejected = [r for r in shown["rows"] if not r["accepted"]]
    assert shown["refused"] is None and shown["total"] == job["total"] == 7
    assert (job["dry_run"], job["rejected"], job["processed"] - job["rejected"]) == (True, len(rejected), 7 - len(rejected))
    assert [(e["row"], e["line"], e["code"], e["message"]) for e in job["errors"]] == [
        (r["row"], r["line"], e["code"], e["message"]) for r in rejected for e in r["errors"]]
    assert {e["code"] for e in job["errors"]} >= {"formula_injection", "missing_first_name", "invalid_email",
                                                 "duplicate_email", "invalid_type"}
    assert await clients_of(engine, d) == {}
