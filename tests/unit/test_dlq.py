"""The operators' tools without a broker: reading dead letters, filters, arguments, what is unhealthy, safe printing."""

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import ConsumerRecord
from rich.console import Console

from clients_import import cli
from clients_import.dlq import (
    REDRIVABLE,
    Filters,
    _skip_reason,
    letter_of,
    parse_coordinates,
    parse_rate,
    parse_since,
    printable,
    value_text,
)
from clients_import.status import problems, render
from shared import topics
from shared.kafka import DeadLetter, dead_letter_record
from shared.settings import Settings

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _record(topic: str, partition: int, offset: int, value: bytes | None, key: bytes | None = b"job-1",
            headers=(), timestamp: datetime = NOW) -> ConsumerRecord:
    return ConsumerRecord(topic, partition, offset, int(timestamp.timestamp() * 1000), 0, key, value, None,
                          len(key or b""), len(value or b""), tuple(headers))


def _letter(value: bytes = b'{"job_id": "j"}', reason: str = "failed 3 times: OperationalError: no such table: clients",
            stage: str = "writer", max_bytes: int = 10 * 1024 * 1024, timestamp: datetime = NOW, key: bytes | None = b"job-1"):
    """A dead letter exactly as a stage writes it (shared.kafka.dead_letter_record), read back from the DLQ."""
    original = _record(topics.ROWS_ACCEPTED, 2, 41, value, key)
    dlq_value, dlq_key, headers = dead_letter_record(DeadLetter(original, stage, reason), max_bytes)
    return letter_of(_record(topics.DLQ, 1, 7, dlq_value, dlq_key, [(k, v.encode()) for k, v in headers.items()], timestamp),
                     keep_value=True)


def test_a_letter_says_where_it_came_from_and_why():
    letter = _letter()
    assert (letter.partition, letter.offset, letter.coordinates) == (1, 7, "1:7")
    assert (letter.original_topic, letter.original_partition, letter.original_offset) == (topics.ROWS_ACCEPTED, 2, 41)
    assert letter.original == f"{topics.ROWS_ACCEPTED}:2:41"
    assert (letter.stage, letter.excerpt, letter.value, letter.key) == ("writer", False, b'{"job_id": "j"}', b"job-1")
    summary = letter.summary()
    assert summary["dlq"] == {"topic": topics.DLQ, "partition": 1, "offset": 7}
    assert summary["original"] == {"topic": topics.ROWS_ACCEPTED, "partition": 2, "offset": 41}
    assert summary["at"] == "2026-11-25T12:00:00Z" and "no such table" in summary["reason"]
    json.dumps(summary)  # JSON-ready


def test_an_excerpt_or_a_letter_from_elsewhere_is_never_redriven():
    excerpt = _letter(value=b"x" * 200_000, max_bytes=100_000)
    assert excerpt.excerpt and "excerpt" in _skip_reason(excerpt)
    assert _skip_reason(_letter()) == ""
    assert topics.ROWS_ACCEPTED in REDRIVABLE and topics.DLQ not in REDRIVABLE and topics.NOTIFICATIONS not in REDRIVABLE
    elsewhere = letter_of(_record(topics.DLQ, 0, 1, b"{}", headers=[("dlq.original.topic", b"payments.outgoing")]))
    assert "payments.outgoing" in _skip_reason(elsewhere)
    nowhere = letter_of(_record(topics.DLQ, 0, 2, b"{}"))
    assert "dlq.original.topic" in _skip_reason(nowhere) and nowhere.original == "?:?:?"


def test_a_letter_with_hostile_headers_is_read_bounded_and_without_failing():
    headers = [("dlq.reason", b"\xff\xfe" + b"r" * 100_000), ("dlq.original.partition", b"two"), *((f"h{i}", b"") for i in range(500))]
    letter = letter_of(_record(topics.DLQ, 0, 3, None, key=None, headers=headers))
    assert len(letter.reason) <= 4000 and letter.reason.startswith("\ufffd")
    assert letter.original_partition is None and len(letter.headers) <= 50 and letter.size == 0
    assert letter.summary()["key"] is None


def test_filters_by_stage_reason_in_any_case_time_and_key():
    letter = _letter(timestamp=NOW)
    assert Filters().match(letter)
    assert Filters(stage="writer", reason="NO SUCH TABLE", since=NOW - timedelta(minutes=1), key="job-1").match(letter)
    assert not Filters(stage="validator").match(letter)
    assert not Filters(reason="timeout").match(letter)
    assert not Filters(since=NOW + timedelta(seconds=1)).match(letter)
    assert not Filters(key="job-2").match(letter)
    assert not Filters(key="job-1").match(_letter(key=None))


@pytest.mark.parametrize(("text", "ago"), [
    ("2h", timedelta(hours=2)), ("30m", timedelta(minutes=30)), ("90s", timedelta(seconds=90)),
    ("1d12h", timedelta(days=1, hours=12)), ("1w", timedelta(weeks=1)), (" 1.5h ", timedelta(hours=1.5)),
])
def test_since_takes_a_duration_ago(text, ago):
    assert parse_since(text, now=NOW) == NOW - ago


def test_since_takes_an_iso_date_time_in_utc_unless_it_says():
    assert parse_since("2026-11-25T10:00:00") == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert parse_since("2026-11-25T10:00:00Z") == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert parse_since("2026-11-25T12:00:00+02:00") == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert parse_since("2026-11-25") == datetime(2026, 11, 25, tzinfo=UTC)


@pytest.mark.parametrize("text", ["yesterday", "2 hours", "h", "", "5", "2h x"])
def test_since_refuses_anything_else_with_the_forms_it_takes(text):
    with pytest.raises(ValueError, match="duration such as 2h"):
        parse_since(text)


def test_rate_and_coordinates():
    assert parse_rate("20") == parse_rate("20/s") == 20.0
    assert parse_rate("0.5/s") == 0.5
    for bad in ("0", "-1", "fast", "inf", "nan"):
        with pytest.raises(ValueError):
            parse_rate(bad)
    assert parse_coordinates("3:17") == (None, 3, 17)
    assert parse_coordinates(f"{topics.DLQ}:3:17") == (topics.DLQ, 3, 17)
    assert parse_coordinates(f"{topics.ROWS_ACCEPTED}:0:5") == (topics.ROWS_ACCEPTED, 0, 5)
    for bad in ("3", "a:b", ":1:2", "t:1:x", ""):
        with pytest.raises(ValueError, match="PARTITION:OFFSET"):
            parse_coordinates(bad)


def test_printable_shows_control_and_invisible_characters_as_escapes_and_cuts():
    text = "ok \x1b[2J\x07 \u202eevil\u200b tab\there\nline"
    shown = printable(text)
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown and "\u200b" not in shown
    assert "\\x1b[2J" in shown and "\\u202e" in shown and "\\t" in shown and "\\n" in shown
    assert printable("a\nb", one_line=False) == "a\nb"
    assert printable("x" * 50, limit=10) == "x" * 10 + "…"
    assert printable("Zoë — 東京") == "Zoë — 東京"


def test_a_value_is_shown_as_pretty_json_or_as_text_and_cut():
    text, cut = value_text(b'{"job_id":"j","rows":[1,2]}', 1000)
    assert json.loads(text) == {"job_id": "j", "rows": [1, 2]} and "\n" in text and not cut
    text, cut = value_text(b"\xff\xfenot utf-8 \x1b", 1000)
    assert "\\xff" in text and "\x1b" not in text and not cut
    text, cut = value_text(b"y" * 5000, 100)
    assert len(text) == 100 and cut
    text, _ = value_text(b"[" * 100_000, 50)  # too deep for a JSON parser: shown as text
    assert text == "[" * 50


def _document(**changes) -> dict:
    group = {"stage": "writer", "group": "p.writer", "state": "Empty", "members": [], "lag": 0,
             "partitions": [{"topic": topics.ROWS_ACCEPTED, "partition": 0, "committed": 5, "end": 5, "lag": 0}],
             "missing_topics": []}
    document = {"checked_at": "2026-11-25T12:00:00Z", "kafka": "k:9092", "groups": [group],
                "dlq": {"topic": topics.DLQ, "count": 0, "newest": []}, "jobs": {"unfinished": 0, "oldest": None}}
    for key, value in changes.items():
        if key == "lag":
            group["lag"] = group["partitions"][0]["lag"] = value
        elif key == "members":
            group["members"] = value
        else:
            document[key] = value
    return document


def test_unhealthy_is_a_group_with_waiting_records_and_no_member_or_a_job_past_half_its_deadline():
    assert problems(_document(), 600) == []
    assert problems(_document(lag=0, members=[]), 600) == []  # an idle stage with nothing to do is fine
    member = {"member_id": "m", "client_id": "c", "host": "/127.0.0.1", "partitions": [f"{topics.ROWS_ACCEPTED}:0"]}
    assert problems(_document(lag=3, members=[member]), 600) == []  # busy, not stuck
    [stuck] = problems(_document(lag=3), 600)
    assert "writer" in stuck and "no member" in stuck and f"3 on {topics.ROWS_ACCEPTED}" in stuck
    job = {"job_id": "j1", "file_name": "c.csv", "status": "processing", "received_at": "2026-11-25T11:55:00Z", "age_s": 301.0}
    [late] = problems(_document(jobs={"unfinished": 1, "oldest": job}), 600)
    assert "j1" in late and "c.csv" in late and "5 min 1 s" in late and "half its deadline of 10 min 0 s" in late
    assert problems(_document(jobs={"unfinished": 1, "oldest": {**job, "age_s": 299.0}}), 600) == []
    [unknown] = problems(_document(jobs={"unfinished": None, "oldest": None, "error": "refused"}), 600)
    assert "database" in unknown


def test_the_status_table_prints_stored_text_as_text_never_as_markup():
    hostile = "[bold red]boom[/] \x1b[31m"
    letter = _letter(reason=hostile).summary()
    job = {"job_id": "j1", "file_name": hostile, "status": "processing", "received_at": "2026-11-25T11:55:00Z", "age_s": 400.0}
    document = _document(lag=2, dlq={"topic": topics.DLQ, "count": 1, "newest": [letter]}, jobs={"unfinished": 1, "oldest": job})
    document["problems"] = problems(document, 600)
    out = io.StringIO()
    render(document, Console(file=out, width=400, color_system=None), 600)
    shown = out.getvalue()
    assert shown.count("[bold red]boom[/]") >= 3  # the reason, the job's file name, the problem
    assert "\x1b" not in shown and "Unhealthy" in shown and "nothing runs the writer" in shown


@pytest.mark.parametrize("argv", [["status"], ["dlq", "list"], ["dlq", "show", "0:1"], ["dlq", "redrive"]])
def test_without_a_broker_each_command_says_so_and_exits_2(argv, capsys):
    args = cli.parser().parse_args(argv)
    assert args.command(args, Settings(_env_file=None)) == 2
    assert "KAFKA_BOOTSTRAP_SERVERS" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "says"), [
    (["dlq", "list", "--since", "last week"], "--since"),
    (["dlq", "list", "--limit", "0"], "--limit"),
    (["dlq", "redrive", "--rate", "fast"], "--rate"),
    (["dlq", "show", "zero"], "PARTITION:OFFSET"),
    (["status", "--timeout", "0"], "--timeout"),
])
def test_a_bad_argument_is_named_in_one_line_and_exits_2(argv, says, capsys):
    args = cli.parser().parse_args(argv)
    assert args.command(args, Settings(kafka_bootstrap_servers="127.0.0.1:9", _env_file=None)) == 2
    err = capsys.readouterr().err
    assert says in err and err.strip().count("\n") == 0
