"""Reading a multipart upload while it streams in, and stopping the moment it passes a bound.

Everything a partner's form can hold is bounded here, and every way a form can be wrong is answered
with a 4xx and a code that says what is wrong:

    400 not a well-formed form:       malformed_multipart, incomplete_multipart, part_header_too_large,
                                      more_than_one_file, repeated_field, too_many_parts
    413 too big:                      file_too_large (the file, or the whole form past the file and its allowance)
    415 not a form:                   not_multipart; not_csv_name (the file's name does not end in .csv)
    422 a value beyond its bound:     file_name_too_long, invalid_file_name, missing_file, field_too_long
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated

from annotated_types import MaxLen
from fastapi import Request
from pydantic import TypeAdapter, ValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from shared.events import ImportRequest

from .errors import ApiError

FORM_ALLOWANCE = 64 * 1024  # bytes of a form beyond its file: the other fields, the part headers and the framing
MAX_PART_HEADER_BYTES = 16 * 1024  # one header line of a part: room for a file name 60 times its limit, told as such
MAX_PART_HEADERS = 8  # header lines in one part (a browser sends two)
MAX_PARTS = 16  # parts in one form: the file and a few fields
MAX_FIELD_BYTES = 4096  # one form field's value (callback_url, the longest, is 2,000 characters at most)
# A column map's field may take most of the form's allowance, and no more: the map travels inside the import's
# request event, whose envelope beyond the file is 64 KiB (Settings.request_max_bytes). That is less than a
# map of every column of the widest file (500 names of 200 characters); the page sends only the columns the
# server would not match by itself (mapping.js), and a map larger still is saved (PUT /mappings, a body of at
# most API_MAX_BODY_BYTES) and named in the `mapping` field, which the uploader resolves: it never travels.
FIELD_BYTES = {"column_map": 48 * 1024}
FILE_FIELD = "file"

# What the parser says when one of our bounds stops it: python-multipart raises the same exception type
# for every fault, so its two bound messages are told apart by their text (the version is pinned).
_PARSER_BOUNDS = {
    "Maximum header size exceeded": (
        "part_header_too_large", f"A part header of the form is longer than {MAX_PART_HEADER_BYTES:,} bytes, the limit."),
    "Maximum header count exceeded": (
        "part_header_too_large", f"A part of the form has more than {MAX_PART_HEADERS} header lines, the limit."),
}


@dataclass
class Upload:
    file_name: str | None = None
    data: bytearray = field(default_factory=bytearray)
    fields: dict[str, str] = field(default_factory=dict)


async def read_upload(content_type: str, body: AsyncIterator[bytes], max_bytes: int) -> Upload:
    parts = _Parts(max_bytes)
    parser = _parser(content_type, parts)
    received = 0
    async for chunk in body:
        received += len(chunk)
        if received > max_bytes + FORM_ALLOWANCE:
            raise file_too_large(max_bytes)
        _write(parser, chunk)
    if not parts.ended:
        raise ApiError(400, "incomplete_multipart",
                       "The form ended before its closing boundary: the body was cut short "
                       "(a Content-Length smaller than the form, or a dropped connection).")
    if parts.upload.file_name is None:
        raise ApiError(422, "missing_file", f"Attach the CSV file in a form field named '{FILE_FIELD}'.")
    return parts.upload


async def take_upload(request: Request, max_bytes: int) -> Upload:
    """A CSV upload form, refused the moment it passes a bound: by its Content-Length when that says so
    already, else while it streams in; and refused when its file's name does not end in .csv. Every route
    that takes a file takes it here (POST /imports, POST /imports/preview)."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes + FORM_ALLOWANCE:
        raise file_too_large(max_bytes)
    upload = await read_upload(request.headers.get("content-type", ""), request.stream(), max_bytes)
    if not upload.file_name.lower().endswith(".csv"):
        raise ApiError(415, "not_csv_name", f"“{upload.file_name}” is not a .csv file: only CSV files can be imported.")
    return upload


def file_too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413, "file_too_large", f"The file is larger than {max_bytes / 1024 / 1024:g} MiB, the limit per file. Split it."
    )


_YES, _NO = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def dry_run_of(text: str) -> bool:
    """A form's `dry_run`. A word we do not know is refused: a typo (`ture`) must not turn a rehearsal into
    a real import."""
    word = text.strip().lower()
    if word not in _YES + _NO:
        raise ApiError(422, "invalid_options", f"dry_run must be one of {', '.join(_YES + _NO[1:])}, not “{text[:40]}”.")
    return word in _YES


def check_contract_text(field_name: str, value: str, what: str, code: str) -> str:
    """Refuse with 422 what the request contract (ImportRequest) would refuse later, saying its bound:
    the contract stays the one owner of each field's length and alphabet."""
    info = ImportRequest.model_fields[field_name]
    try:
        return _contract_adapter(field_name).validate_python(value)
    except ValidationError as error:
        kind = error.errors()[0]["type"]
    if kind == "string_too_long":
        limit = next(m.max_length for m in info.metadata if isinstance(m, MaxLen))
        raise ApiError(422, f"{code}_too_long", f"{what} is {len(value):,} characters long; the limit is {limit}.")
    if kind == "string_too_short":
        raise ApiError(422, "missing_file" if code == "file_name" else f"invalid_{code}", f"{what} is empty.")
    raise ApiError(422, f"invalid_{code}",
                   f"{what} holds a control or invisible character (a tab, a line break, NUL, a direction override...): "
                   "only printable text is allowed.")


@cache
def _contract_adapter(field_name: str) -> TypeAdapter:
    return TypeAdapter(Annotated[str, ImportRequest.model_fields[field_name]])


def _parser(content_type: str, parts: "_Parts") -> MultipartParser:
    # Headers arrive decoded as Latin-1; anything else cannot have come from the wire and is not a form.
    kind, params = parse_options_header(content_type.encode("latin-1", "replace").decode("latin-1"))
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise ApiError(415, "not_multipart", f"Send the file as multipart/form-data, in a field named '{FILE_FIELD}'.")
    try:
        return MultipartParser(params[b"boundary"], callbacks=parts.callbacks(),
                               max_header_count=MAX_PART_HEADERS, max_header_size=MAX_PART_HEADER_BYTES)
    except FormParserError as error:  # a boundary longer than RFC 2046 allows, say
        raise _malformed(error) from error


def _write(parser: MultipartParser, chunk: bytes) -> None:
    try:
        parser.write(chunk)
    except FormParserError as error:
        code, message = _PARSER_BOUNDS.get(str(error), (None, None))
        if code:
            raise ApiError(400, code, message) from error
        raise _malformed(error) from error


def _malformed(error: Exception) -> ApiError:
    return ApiError(400, "malformed_multipart",
                    f"The body is not a well-formed multipart/form-data form ({str(error)[:200]}).")


class _Parts:
    """Callbacks for python-multipart's streaming parser: keeps the one 'file' part and the small fields,
    and raises the moment the form passes a bound."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.upload = Upload()
        self.ended = False
        self._count = 0
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._name: str | None = None
        self._is_file = False
        self._value = bytearray()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_part_data": self._data,
            "on_part_end": self._end,
            "on_end": self._form_end,
        }

    def _begin(self) -> None:
        self._count += 1
        if self._count > MAX_PARTS:
            raise ApiError(400, "too_many_parts", f"The form has more than {MAX_PARTS} parts, the limit.")
        self._name, self._is_file, self._value = None, False, bytearray()

    def _header_end(self) -> None:
        if self._header_field.lower() == b"content-disposition":
            _, params = parse_options_header(self._header_value.decode("latin-1"))
            self._name = params.get(b"name", b"").decode("utf-8", "replace")
            if b"filename" in params and self._name == FILE_FIELD:
                self._take_file(params[b"filename"].decode("utf-8", "replace"))
            elif self._name in self.upload.fields or self._name == FILE_FIELD and self.upload.file_name is not None:
                raise ApiError(400, "repeated_field", f"The form has the field '{self._name[:60]}' twice.")
        self._header_field, self._header_value = bytearray(), bytearray()

    def _take_file(self, file_name: str) -> None:
        if self.upload.file_name is not None:
            raise ApiError(400, "more_than_one_file", "The form has more than one file: send one file per upload.")
        self.upload.file_name = check_contract_text("file_name", file_name, "The file name", "file_name")
        self._is_file = True

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.upload.data += data[start:end]
            if len(self.upload.data) > self.max_bytes:
                raise file_too_large(self.max_bytes)
            return
        self._value += data[start:end]
        limit = FIELD_BYTES.get(self._name or "", MAX_FIELD_BYTES)
        if len(self._value) > limit:
            raise ApiError(422, "field_too_long",
                           f"The form field '{(self._name or '')[:60]}' is longer than {limit:,} bytes, the limit.")

    def _end(self) -> None:
        if self._name and not self._is_file:
            self.upload.fields[self._name] = self._value.decode("utf-8", "replace")
        self._is_file = False

    def _form_end(self) -> None:
        self.ended = True


def form_schema(**fields: dict) -> dict:
    """The OpenAPI description of an upload form: its `file` part and these fields (name -> JSON schema)."""
    file = {"type": "string", "format": "binary", "description": "the CSV file (name ending .csv)"}
    return {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": [FILE_FIELD], "properties": {FILE_FIELD: file, **fields}}}}}


# The fields that say how a file's columns are read, on every route that reads one.
MAPPING_FIELDS = {
    "column_map": {"type": "string", "description": 'a JSON object: column as in the header -> field or null, '
                                                    'e.g. {"Mail": "email", "Notes": null}'},
    "mapping": {"type": "string", "description": "the name of a saved mapping (PUT /mappings/{name})"},
}
