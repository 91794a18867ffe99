"""Pathological files at the byte limit: each is read to the right Issue or ReadFile.

The tests assert behaviour only. Time and memory are measured by running this module:

    .venv/bin/python -m tests.unit.test_reading_bounds

which reads (and cuts) each file in a fresh process and prints seconds and peak megabytes.
"""

import codecs
import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from services.uploader.chunking import cut
from shared.events import ImportOptions, Issue
from shared.reading import Limits, ReadFile, read_file

LIMIT = Limits().max_bytes  # 10 MiB
HEADER = "firstName,email\n"


def fill(head: str, unit: str, tail: str = "", encoding: str = "utf-8") -> bytes:
    """`head`, then `unit` as many times as fits in the byte limit with `tail`, then `tail`."""
    room = LIMIT - len((head + tail).encode(encoding))
    return (head + unit * (room // len(unit.encode(encoding))) + tail).encode(encoding)


def wide_rows(value: str) -> bytes:
    """As many rows as allowed of as many columns as allowed, every value `value`: the most cells a file can hold."""
    header = ",".join(["firstName", "email", *(f"c{i}" for i in range(3, 501))]) + "\n"
    return (header + (",".join([value] * 500) + "\n") * 5000).encode()


def utf16(text: str) -> bytes:
    return codecs.BOM_UTF16_LE + text.encode("utf-16-le")


def refused(code: str, *phrases: str) -> Callable[[ReadFile | Issue], None]:
    def check(result: ReadFile | Issue) -> None:
        assert isinstance(result, Issue), result
        assert result.code == code, result
        for phrase in phrases:
            assert phrase in result.message, result.message

    return check


def read(records: int, first_line: int | None = None) -> Callable[[ReadFile | Issue], None]:
    def check(result: ReadFile | Issue) -> None:
        assert isinstance(result, ReadFile), result
        assert len(result.records) == records
        if first_line is not None:
            assert result.lines[0] == first_line

    return check


MULTI_LINE = '"' + "\n" * 65_000 + '",a\n'  # a record of 65,003 characters and 65,001 lines

CASES: dict[str, tuple[Callable[[], bytes], Callable[[ReadFile | Issue], None]]] = {
    "one-character rows, no header ('a\\n' x 5M)": (lambda: fill("", "a\n"), refused("missing_columns")),
    "one-character rows after a header": (lambda: fill(HEADER, "a\n"), refused("too_many_records", "more than 10000")),
    "5,001 rows then one-character rows": (
        lambda: fill(HEADER + "Ann,ann@x.com\n" * 5001, '"a"\n'), refused("too_many_records", "more than 10000")
    ),
    "a header of delimiters only (a blank line)": (lambda: fill("", ","), refused("empty_file")),
    "a blank line of delimiters, then the header": (
        lambda: fill("", ",", "\n" + HEADER + "Ann,ann@x.com\n"), read(1, first_line=3)
    ),
    "a header of delimiters after its names": (
        lambda: fill("firstName,email", ","), refused("too_many_columns", "more than 500")
    ),
    "blank lines (LF)": (lambda: fill(HEADER, "\n", "Ann,ann@x.com\n"), read(1)),
    "bare CRs": (lambda: fill(HEADER, "\r", "Ann,ann@x.com\n"), read(1)),
    "blank lines (CRLF)": (lambda: fill(HEADER, "\r\n", "Ann,ann@x.com\n"), read(1)),
    "blank lines of spaces and delimiters": (lambda: fill(HEADER, " , ,\t\n", "Ann,ann@x.com\n"), read(1)),
    'blank quoted values ("","")': (lambda: fill(HEADER, '"",""\n', "Ann,ann@x.com\n"), read(1)),
    "one blank quoted value of line breaks": (
        lambda: fill(HEADER + '"', "\n", '"\nAnn,ann@x.com\n'), read(1)
    ),
    "one giant quoted field": (lambda: fill(HEADER + 'Ann,"', "x", '"\n'), refused("record_too_long", "line 2")),
    "one giant unterminated quoted field": (
        lambda: fill(HEADER + 'Ann,"', "x"), refused("record_too_long", "line 2", "quotes are closed")
    ),
    "a huge single line": (lambda: fill("", "a"), refused("header_too_long")),
    "a huge data line": (lambda: fill(HEADER, "a"), refused("record_too_long", "line 2")),
    "a data line of delimiters": (lambda: fill(HEADER + "Ann", ","), refused("record_too_long", "line 2")),
    "data rows of 1,000 delimiters": (
        lambda: fill(HEADER, "a" + "," * 1000 + "\n"), refused("too_many_columns", "Line 2")
    ),
    "data rows of delimiters only": (lambda: fill(HEADER, "," * 1000 + "\n"), refused("no_records")),
    "a header of 10,000 columns": (
        lambda: fill(",".join(["firstName", "email", *(f"c{i}" for i in range(9998))]) + "\n", "Ann,ann@x.com\n"),
        refused("too_many_columns", "10000 columns"),
    ),
    "a header of 1M short columns": (
        lambda: fill("firstName,email", ",cc"), refused("too_many_columns", "more than 500")
    ),
    "a control character (x 10M)": (lambda: fill("", "\x01"), refused("header_too_long")),
    "rows of control characters": (lambda: fill(HEADER, "\x01" * 100 + "\n"), refused("too_many_records")),
    'lots of "" escapes in one value': (lambda: fill(HEADER + 'Ann,"', '""', '"\n'), refused("record_too_long")),
    'rows of "" escapes': (lambda: fill(HEADER, '"' + '""' * 20 + '",a\n'), refused("too_many_records")),
    "multi-line records of 65,000 line breaks": (
        lambda: fill(HEADER, MULTI_LINE), read((LIMIT - len(HEADER)) // len(MULTI_LINE))
    ),
    "Windows-1252 (cp1252 fallback)": (
        lambda: fill(HEADER, "René,rene@x.com\n", encoding="cp1252"), refused("too_many_records", "more than 10000")
    ),
    "UTF-16 rows": (lambda: utf16(HEADER + "Ann,ann@x.com\n" * 370_000), refused("too_many_records")),
    "UTF-16 blank lines": (lambda: utf16(HEADER + "\n" * 5_000_000 + "Ann,ann@x.com\n"), read(1)),
    "5,000 rows x 500 values '€' (most cells)": (lambda: wide_rows("€"), read(5000)),
    "5,000 rows x 500 values 'ab'": (lambda: wide_rows("ab"), read(5000)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_pathological_file_at_the_byte_limit_is_read_to_the_right_result(name: str):
    build, check = CASES[name]
    data = build()
    assert len(data) <= LIMIT

    check(read_file(data))


# --- measuring: python -m tests.unit.test_reading_bounds ----------------------------------------------------

_MEASURE = """
import gc, json, resource, sys, time, tracemalloc
from tests.unit.test_reading_bounds import CASES, measure_one
print(json.dumps(measure_one(sys.argv[1])))
"""


def measure_one(name: str) -> dict:
    import gc
    import resource
    import time
    import tracemalloc

    data = CASES[name][0]()
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = read_file(data)
    read_s = time.perf_counter() - started
    cut_s = None
    if isinstance(result, ReadFile):
        started = time.perf_counter()
        cut("job", result, 500, ImportOptions())
        cut_s = time.perf_counter() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del result
    gc.collect()
    tracemalloc.start()
    result = read_file(data)
    read_peak = tracemalloc.get_traced_memory()[1]
    cut_peak = None
    if isinstance(result, ReadFile):
        tracemalloc.reset_peak()
        cut("job", result, 500, ImportOptions())
        cut_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    outcome = result.code if isinstance(result, Issue) else f"{len(result.records)} records"
    return dict(name=name, bytes=len(data), outcome=outcome, read_s=read_s, read_mb=read_peak / 2**20,
                cut_s=cut_s, cut_mb=None if cut_peak is None else cut_peak / 2**20,
                rss_growth_mb=(rss_after - rss_before) / 1024)


def main() -> None:
    print("| input | bytes | outcome | read s | read peak MB | cut s | read+cut peak MB | RSS growth MB |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for name in CASES:
        out = subprocess.run([sys.executable, "-c", _MEASURE, name], capture_output=True, text=True, check=True)
        m = json.loads(out.stdout)
        cut_s = "" if m["cut_s"] is None else f"{m['cut_s']:.2f}"
        cut_mb = "" if m["cut_mb"] is None else f"{m['cut_mb']:.0f}"
        print(f"| {m['name']} | {m['bytes']:,} | {m['outcome']} | {m['read_s']:.2f} | {m['read_mb']:.0f} | {cut_s} "
              f"| {cut_mb} | {m['rss_growth_mb']:.0f} |")


if __name__ == "__main__":
    main()


def test_reading_keeps_the_values_of_only_the_rows_asked_for_and_says_the_same_of_the_file():
    """read_records(keep=n), the API's preview: the same count, lines, warnings and footer as a full read."""
    from shared.reading import prepare, read_records

    rows = [f"Ann{i},a{i}@x.com,note" for i in range(50)]
    data = "\n".join(["firstName,email,Notiz", *rows, "", "Copyright (c) 2000-2026 salesforce.com", "Acme Inc."]).encode()
    prepared = prepare(data, Limits())
    full = read_records(prepared.text, Limits(), prepared.warnings, None, prepared.delimiter)
    kept = read_records(prepared.text, Limits(), prepared.warnings, None, prepared.delimiter, keep=5)

    assert (len(kept.records), kept.lines, kept.warnings, kept.columns) == (len(full.records), full.lines,
                                                                            full.warnings, full.columns)
    assert len(full.records) == 50 and any(w.code == "report_footer" for w in full.warnings)
    assert kept.records[:5] == full.records[:5]
    assert all(cells == [] for cells in kept.records[5:])
