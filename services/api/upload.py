"""Reading a multipart upload while it streams in, and stopping the moment it passes the byte limit."""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

from .errors import ApiError

FORM_ALLOWANCE = 64 * 1024  # room for the form's other fields and the multipart framing


@dataclass
class Upload:
    file_name: str | None = None
    data: bytearray = field(default_factory=bytearray)
    fields: dict[str, str] = field(default_factory=dict)


async def read_upload(content_type: str, body: AsyncIterator[bytes], max_bytes: int) -> Upload:
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise ApiError(415, "not_multipart", "Send the file as multipart/form-data, in a field named 'file'.")
    parts = _Parts(max_bytes)
    parser = MultipartParser(params[b"boundary"], callbacks=parts.callbacks())
    received = 0
    async for chunk in body:
        received += len(chunk)
        if received > max_bytes + FORM_ALLOWANCE:
            raise _too_large(max_bytes)
        parser.write(chunk)
        if parts.too_large:
            raise _too_large(max_bytes)
    parser.finalize()
    if parts.upload.file_name is None:
        raise ApiError(422, "missing_file", "Attach the CSV file in a form field named 'file'.")
    return parts.upload


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413, "file_too_large", f"The file is larger than {max_bytes / 1024 / 1024:.0f} MB, the limit per file. Split it."
    )


class _Parts:
    """Callbacks for python-multipart's streaming parser: keeps the 'file' part and the small fields."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.upload = Upload()
        self.too_large = False
        self._header_field = b""
        self._header_value = b""
        self._name: str | None = None
        self._is_file = False
        self._value = bytearray()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._add("_header_field", data[start:end]),
            "on_header_value": lambda data, start, end: self._add("_header_value", data[start:end]),
            "on_header_end": self._header_end,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _add(self, attribute: str, data: bytes) -> None:
        setattr(self, attribute, getattr(self, attribute) + data)

    def _begin(self) -> None:
        self._name, self._is_file, self._value = None, False, bytearray()

    def _header_end(self) -> None:
        if self._header_field.lower() == b"content-disposition":
            _, params = parse_options_header(self._header_value)
            self._name = params.get(b"name", b"").decode("utf-8", "replace")
            if b"filename" in params and self._name == "file":
                self._is_file = True
                self.upload.file_name = params[b"filename"].decode("utf-8", "replace")
        self._header_field, self._header_value = b"", b""

    def _data(self, data: bytes, start: int, end: int) -> None:
        target = self.upload.data if self._is_file else self._value
        target += data[start:end]
        if len(target) > (self.max_bytes if self._is_file else 4096):
            self.too_large = True

    def _end(self) -> None:
        if self._name and not self._is_file:
            self.upload.fields[self._name] = self._value.decode("utf-8", "replace")
