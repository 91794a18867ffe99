"""Reading an upload as it streams: the byte limit stops the reading, not just the answer."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api.errors import ApiError
from services.api.errors import ApiError as UploadError
from services.api.upload import FORM_ALLOWANCE, MAX_FIELD_BYTES, MAX_PART_HEADER_BYTES, MAX_PARTS, read_upload

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


# Hostile and broken forms: each is refused with a 4xx and a code that names what is wrong, never a crash.

FILE_HEAD = b'--b\r\nContent-Disposition: form-data; name="file"; filename="c.csv"\r\n\r\n'


async def refusal(body: bytes | list[bytes], content_type: str = TYPE, max_bytes: int = 100_000) -> ApiError:
    with pytest.raises(UploadError) as refused:
        await read_upload(content_type, stream(body if isinstance(body, list) else [body], []), max_bytes)
    return refused.value


@pytest.mark.parametrize("body", [
    pytest.param(b'--other\r\nContent-Disposition: form-data; name="file"; filename="c.csv"\r\n\r\nx\r\n--other--\r\n',
                 id="a boundary other than the header's"),
    pytest.param(b"\x00\xffGET / HTTP/1.1 garbage" * 20, id="garbage"),
    pytest.param(b'--b\r\nContent-Disposition form-data; name="file"; filename="c.csv"\r\n\r\nx\r\n--b--\r\n',
                 id="a part header without a colon"),
    pytest.param(b'--b\r\nContent-Disposition: form-data;\r name="file"; filename="c.csv"\r\n\r\nx\r\n--b--\r\n',
                 id="a bare CR in a part header"),
])
async def test_a_malformed_form_is_refused_as_malformed(body):
    error = await refusal(body)
    assert (error.status, error.code) == (400, "malformed_multipart")


async def test_a_body_cut_short_before_the_closing_boundary_is_refused():
    whole = FILE_HEAD + b"firstName,email\nAnn,ann@example.com\n\r\n--b--\r\n"
    error = await refusal(whole[: len(whole) - 12])  # what a Content-Length smaller than the body delivers
    assert (error.status, error.code) == (400, "incomplete_multipart")


async def test_a_huge_part_header_is_refused_before_it_is_held_in_memory():
    consumed: list[int] = []
    header = b'--b\r\nContent-Disposition: form-data; name="file"; filename="' + b"a" * 1024
    with pytest.raises(UploadError) as refused:
        await read_upload(TYPE, stream([header, *[b"a" * 65536] * 160], consumed), 100_000_000)  # 10 MB
    assert (refused.value.status, refused.value.code) == (400, "part_header_too_large")
    assert f"{MAX_PART_HEADER_BYTES:,}" in refused.value.message.replace("\u202f", ",")
    assert sum(consumed) <= MAX_PART_HEADER_BYTES + 2 * 65536


async def test_a_second_file_part_is_refused_rather_than_added_to_the_first():
    second = b'\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="d.csv"\r\n\r\nB,b@x.com\r\n--b--\r\n'
    error = await refusal(FILE_HEAD + b"firstName,email\nA,a@x.com" + second)
    assert (error.status, error.code) == (400, "more_than_one_file")


async def test_a_repeated_field_and_too_many_parts_are_refused():
    def field(name: str) -> bytes:
        return b'--b\r\nContent-Disposition: form-data; name="%s"\r\n\r\nx\r\n' % name.encode()
    repeated = await refusal(field("mode") + field("mode") + FILE_HEAD + b"x\r\n--b--\r\n")
    many = await refusal(b"".join(field(f"f{i}") for i in range(MAX_PARTS + 1)) + FILE_HEAD + b"x\r\n--b--\r\n")
    assert (repeated.status, repeated.code) == (400, "repeated_field")
    assert (many.status, many.code) == (400, "too_many_parts") and str(MAX_PARTS) in many.message


@pytest.mark.parametrize(("name", "code", "says"), [
    ("a" * 10_000 + ".csv", "file_name_too_long", "255"),
    ("a" * 256 + ".csv", "file_name_too_long", "255"),
    ("tab\there.csv", "invalid_file_name", "control or invisible character"),
    ("a\u0085.csv", "invalid_file_name", "control or invisible character"),  # a C1 control (NEL)
    ("invoice\u202etxt.exe.csv", "invalid_file_name", "direction override"),  # reads as ...exe.txt
    ("", "missing_file", "file"),
])
async def test_a_file_name_beyond_the_contracts_bounds_is_refused_with_the_bound(name, code, says):
    error = await refusal(form(b"firstName,email\n", name=name))
    assert (error.status, error.code) == (422, code)
    assert says in error.message


async def test_a_form_field_over_its_limit_is_refused_with_the_limit():
    error = await refusal(form(b"firstName,email\n", fields={"callback_url": "https://x.example/" + "a" * MAX_FIELD_BYTES}))
    assert (error.status, error.code) == (422, "field_too_long")
    assert "callback_url" in error.message and f"{MAX_FIELD_BYTES:,}" in error.message


async def test_a_boundary_longer_than_the_parser_allows_is_refused():
    error = await refusal(form(b"x"), content_type="multipart/form-data; boundary=" + "b" * 300)
    assert error.status == 400 and error.code == "malformed_multipart"


# Any body at all, in any chunks, with any content type: a form, or a refusal with a 4xx.

def _mutations() -> st.SearchStrategy[bytes]:
    pieces = st.sampled_from([
        b"--b", b"--b--", b"\r\n", b"\r", b"\n", b"Content-Disposition: form-data", b'; name="file"', b'; name="mode"',
        b'; filename="c.csv"', b'; filename="', b":", b";", b'"', b"--", b"firstName,email\n", b"\x00", b"\xff",
        b"Content-Type: text/csv", b"a" * 300,
    ])
    return st.lists(st.one_of(pieces, st.binary(max_size=40)), max_size=30).map(b"".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(_mutations(), st.binary(max_size=2000), st.builds(lambda b: b"".join(form(b)), st.binary(max_size=200))),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=5),
    content_type=st.one_of(st.just(TYPE), st.text(max_size=80),
                           st.builds("multipart/form-data; boundary={}".format, st.text(max_size=300))),
)
async def test_any_body_is_read_or_refused_with_a_4xx_and_a_code(body, cuts, content_type):
    bounds = sorted({0, len(body), *(c for c in cuts if c < len(body))})
    chunks = [body[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    try:
        upload = await read_upload(content_type, stream(chunks, []), 1000)
    except UploadError as error:
        assert 400 <= error.status < 500 and error.code and error.message
    else:
        assert upload.file_name and len(upload.data) <= 1000
