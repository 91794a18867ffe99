"""Reading an upload as it streams: the byte limit stops the reading, not just the answer."""

import pytest

from services.api.errors import ApiError as UploadError
from services.api.upload import FORM_ALLOWANCE, read_upload

TYPE = "multipart/form-data; boundary=b"


async def stream(parts: list[bytes], consumed: list[int]):
    for part in parts:
        consumed.append(len(part))
        yield part


def form(file_bytes: bytes, name: str = "clients.csv", fields: dict | None = None) -> list[bytes]:
    head = b"".join(
        b'--b\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (k.encode(), v.encode())
        for k, v in (fields or {}).items()
    )
    return [head + b'--b\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n\r\n' % name.encode(),
            file_bytes, b"\r\n--b--\r\n"]


async def test_the_file_and_its_fields_are_read():
    upload = await read_upload(TYPE, stream(form(b"firstName,email\n", fields={"mode": "create_only"}), []), 1000)
    assert (upload.file_name, bytes(upload.data), upload.fields) == ("clients.csv", b"firstName,email\n", {"mode": "create_only"})


async def test_reading_stops_as_soon_as_the_file_passes_the_limit():
    consumed: list[int] = []
    endless = [b"x" * 1024] * 10_000  # 10 MiB offered, the limit is 8 KiB
    with pytest.raises(UploadError) as refused:
        await read_upload(TYPE, stream([form(b"")[0], *endless], consumed), 8 * 1024)
    assert (refused.value.status, refused.value.code) == (413, "file_too_large")
    assert sum(consumed) <= 8 * 1024 + FORM_ALLOWANCE + 2048


async def test_a_form_without_a_file_and_a_body_that_is_not_a_form_are_refused():
    with pytest.raises(UploadError) as no_file:
        await read_upload(TYPE, stream([b'--b\r\nContent-Disposition: form-data; name="mode"\r\n\r\nx\r\n--b--\r\n'], []), 100)
    with pytest.raises(UploadError) as not_form:
        await read_upload("application/json", stream([b"{}"], []), 100)
    assert (no_file.value.code, not_form.value.code) == ("missing_file", "not_multipart")
