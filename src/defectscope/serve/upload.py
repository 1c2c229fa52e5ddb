"""Read a multipart upload while it streams in, refusing it as soon as it breaks a limit.

Starlette's own form parser spools every file to disk with no size limit before the endpoint
sees it; this reader counts bytes per file and for the whole body as they arrive, keeps files
in memory (bounded by the limits) and stops reading at the first byte over a limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

# room for part headers and boundaries on top of the file bytes themselves
FORM_OVERHEAD = 64 * 1024
MAX_FIELD_BYTES = 1024  # a text field (class_name) is a short name
MAX_FIELDS = 8


class UploadError(Exception):
    """A request the service refuses: an HTTP status, a short code and a message for a person."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Part:
    name: str
    filename: str | None  # None for a text field
    content_type: str
    data: bytearray = field(default_factory=bytearray)


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.4g} MiB"


class _Collector:
    """python-multipart callbacks that build Parts and raise UploadError past a limit."""

    def __init__(self, max_file_bytes: int, max_files: int, file_fields: tuple[str, ...] = ()) -> None:
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.file_fields = file_fields
        self.parts: list[Part] = []
        self.ended = False
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""

    def on_part_begin(self) -> None:
        self._headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._field.strip().lower()] = self._value.strip()
        self._field = self._value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise UploadError(400, "bad_form", "a form part has no name (Content-Disposition: form-data; name=...)")
        name = options[b"name"].decode("utf-8", "replace")
        filename = options[b"filename"].decode("utf-8", "replace")[:255] if b"filename" in options else None
        if filename is None and name in self.file_fields:
            # without a filename it would be read as a short text field and refused as too large
            raise UploadError(400, "no_filename",
                              f"form field {name!r} is sent as a text field, without a filename: send the image as a "
                              f'file part (Content-Disposition: form-data; name="{name}"; filename="part.png"), '
                              f"e.g. curl -F {name}=@part.png")
        ctype = self._headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        files = sum(p.filename is not None for p in self.parts) + (filename is not None)
        if files > self.max_files:
            raise UploadError(413, "too_many_files", f"too many files: at most {self.max_files} in this request")
        if filename is None and len(self.parts) - files >= MAX_FIELDS:
            raise UploadError(400, "bad_form", f"at most {MAX_FIELDS} text fields per request")
        self.parts.append(Part(name, filename, ctype))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        limit = self.max_file_bytes if part.filename is not None else MAX_FIELD_BYTES
        if len(part.data) + (end - start) > limit:
            if part.filename is None:
                raise UploadError(413, "too_large", f"field {part.name!r} is over {limit} bytes")
            raise UploadError(413, "too_large", f"file {part.filename!r} is over the upload limit of {_mib(limit)}")
        part.data += data[start:end]

    def on_end(self) -> None:
        self.ended = True


async def read_multipart(
    content_type: str, content_length: str | None, stream: AsyncIterator[bytes],
    max_file_bytes: int, max_files: int, max_body_bytes: int, file_fields: tuple[str, ...] = (),
) -> list[Part]:
    """Parse a multipart/form-data body from `stream`; UploadError as soon as a limit is broken.

    A part named in `file_fields` must carry a filename (it is refused as soon as its headers end).
    """
    mime, params = parse_options_header(content_type)
    if mime != b"multipart/form-data":
        raise UploadError(415, "wrong_content_type",
                          f"send images as multipart/form-data (field 'file'), not {content_type or 'no content type'}")
    if not params.get(b"boundary"):
        raise UploadError(400, "bad_form", "multipart/form-data without a boundary")
    body_limit = max_body_bytes + FORM_OVERHEAD
    if content_length is not None and content_length.isdigit() and int(content_length) > body_limit:
        raise UploadError(413, "too_large", f"request body of {_mib(int(content_length))} is over the limit of "
                                            f"{_mib(max_body_bytes)}")
    collector = _Collector(max_file_bytes, max_files, file_fields)
    callbacks = {name: getattr(collector, name) for name in (
        "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
        "on_part_data", "on_end")}
    try:
        parser = MultipartParser(params[b"boundary"], callbacks)  # type: ignore[arg-type]
        received = 0
        async for chunk in stream:
            received += len(chunk)
            if received > body_limit:  # a chunked body, or one longer than its Content-Length said
                raise UploadError(413, "too_large", f"request body is over the limit of {_mib(max_body_bytes)}")
            parser.write(chunk)
        parser.finalize()
    except FormParserError as err:
        raise UploadError(400, "bad_form", f"malformed multipart body ({err})") from err
    if not collector.ended:
        raise UploadError(400, "bad_form", "multipart body ended before its closing boundary")
    return collector.parts
