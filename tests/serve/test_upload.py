"""The streaming multipart reader: limits hold while the body arrives, not after it has all been read."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("python_multipart")

from defectscope.serve.upload import FORM_OVERHEAD, UploadError, read_multipart  # noqa: E402

BOUNDARY = "b0undary"
CTYPE = f"multipart/form-data; boundary={BOUNDARY}"


def body(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\nContent-Type: image/png\r\n\r\n".encode()
        out += data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


class Stream:
    """Yields `data` in chunks and records how much was pulled."""

    def __init__(self, data: bytes, chunk: int = 4096) -> None:
        self.data, self.chunk, self.pulled = data, chunk, 0

    async def __aiter__(self):
        for start in range(0, len(self.data), self.chunk):
            piece = self.data[start : start + self.chunk]
            self.pulled += len(piece)
            yield piece


def read(data: bytes, max_file: int = 10_000, max_files: int = 2, max_body: int = 20_000, ctype: str = CTYPE,
         length: str | None = None, stream: Stream | None = None):
    return asyncio.run(read_multipart(ctype, length, stream or Stream(data), max_file, max_files, max_body))


def test_files_and_fields_come_back_in_order():
    parts = read(body(("file", "a.png", b"A" * 5000), ("class_name", None, b"widget"), ("file", "b.png", b"\r\n--x")))
    assert [(p.name, p.filename, bytes(p.data)) for p in parts] == [
        ("file", "a.png", b"A" * 5000), ("class_name", None, b"widget"), ("file", "b.png", b"\r\n--x")]
    assert parts[0].content_type == "image/png"


def test_a_file_over_the_limit_stops_the_read_early():
    stream = Stream(body(("file", "big.png", b"x" * 1_000_000)))
    with pytest.raises(UploadError) as err:
        read(b"", max_file=10_000, max_body=10_000_000, stream=stream)
    assert err.value.status == 413 and "big.png" in err.value.message
    assert stream.pulled < 10_000 + 2 * stream.chunk  # stopped at the limit, not at the end of the body


def test_a_body_over_the_limit_stops_the_read_early_without_a_length():
    stream = Stream(body(*[("file", f"{i}.png", b"x" * 9_000) for i in range(30)]))
    with pytest.raises(UploadError) as err:
        read(b"", max_file=10_000, max_files=100, max_body=20_000, stream=stream)
    assert err.value.status == 413
    assert stream.pulled <= 20_000 + FORM_OVERHEAD + stream.chunk


def test_a_declared_length_over_the_limit_is_refused_before_reading():
    stream = Stream(body(("file", "a.png", b"x")))
    with pytest.raises(UploadError) as err:
        read(b"", max_body=1000, length=str(10**9), stream=stream)
    assert err.value.status == 413 and stream.pulled == 0


def test_too_many_files():
    with pytest.raises(UploadError) as err:
        read(body(*[("file", f"{i}.png", b"x") for i in range(3)]), max_files=2)
    assert err.value.status == 413 and err.value.code == "too_many_files"


@pytest.mark.parametrize(("ctype", "status"), [("application/json", 415), ("", 415), ("multipart/form-data", 400)])
def test_content_types(ctype, status):
    with pytest.raises(UploadError) as err:
        read(body(("file", "a.png", b"x")), ctype=ctype)
    assert err.value.status == status


def test_a_truncated_body_is_malformed():
    with pytest.raises(UploadError) as err:
        read(body(("file", "a.png", b"x" * 100))[:-30])
    assert err.value.status == 400 and err.value.code == "bad_form"


def test_a_long_text_field_is_refused():
    with pytest.raises(UploadError) as err:
        read(body(("class_name", None, b"w" * 5000)))
    assert err.value.status == 413
