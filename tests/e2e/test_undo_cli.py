"""`clients-import undo JOB`, run as an operator runs it: on one machine, and against served stages."""

import json
import subprocess

from .command_line import operator_env, run_cli
from .conftest import clients_of, unique_domain
from .test_cli import CLI, _env


def test_undo_on_one_machine_takes_back_what_run_imported_and_a_second_undo_is_refused(settings, tmp_path):
    d = unique_domain()
    first = tmp_path / "first.csv"
    first.write_text(f"firstName,email\nAnn,ann@{d}\nBen,ben@{d}\n")
    env = _env(settings, tmp_path)
    ran = subprocess.run([*CLI, "run", str(first), "--json"], env=env, capture_output=True, text=True, timeout=180)
    assert ran.returncode == 0, ran.stderr[-2000:]
    job = json.loads(ran.stdout)["job_id"]

    undone = subprocess.run([*CLI, "undo", job, "--json"], env=env, capture_output=True, text=True, timeout=180)
    again = subprocess.run([*CLI, "undo", job], env=env, capture_output=True, text=True, timeout=60)
    shown = subprocess.run([*CLI, "undo", "no-such-job"], env=env, capture_output=True, text=True, timeout=60)

    assert undone.returncode == 0, undone.stderr[-2000:]
    note = json.loads(undone.stdout)
    assert (note["kind"], note["undo_of"], note["status"], note["deleted"], note["total"]) == (
        "undo", job, "completed", 2, 2)
    assert again.returncode == 2 and "[already_undone]" in again.stderr
    assert shown.returncode == 2 and "[unknown_import]" in shown.stderr


async def test_undo_against_served_stages_sends_the_request_to_them_and_prints_the_notification(
        partner, settings, engine):
    d = unique_domain()
    original = await partner.run(f"firstName,email\nCyd,cyd@{d}\n")

    unsigned = await run_cli(operator_env(settings, JOB_SIGNING_SECRET="", API_TOKEN=""), "undo", original.job_id,
                             timeout=120)
    # Signed with the served stages' key (theirs is API_TOKEN here), as our CLI: it may undo any import.
    code, out, err, _ = await run_cli(operator_env(settings, JOB_SIGNING_SECRET=settings.signing_key), "undo",
                                      original.job_id, timeout=120)

    # Without the served stages' key the CLI cannot sign: it says so rather than send what would be refused.
    assert unsigned[0] == 2 and "[undo_not_allowed]" in unsigned[2], unsigned[2][-2000:]

    assert code == 0, err[-2000:]
    assert out.startswith("✔ Undid the import of clients.csv: 1 client deleted")
    assert await clients_of(engine, d) == {}
