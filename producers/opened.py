"""One load input opened for a :class:`~producers.file_load.FileLoader`: a local file,
standard input or an S3 object, decompressed (:mod:`producers.sources`), with a look at its
first line to tell an export file.

An input that must be read twice (``strict``, or an export file, verified first) and cannot
seek back cheaply — standard input, an S3 object, a compressed stream — is spooled to a temp
file, so memory stays flat.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile
from typing import Any, BinaryIO

from producers.export import PrefixedStream, looks_like_export
from producers.records import MAX_LINE_BYTES
from producers.sources import close_source, codec, is_s3, open_source


class OpenedInput:
    """A context manager giving the input's binary stream; ``export`` tells whether its
    first line is an export line (jsonl only)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        strict: bool,
        format: str = "jsonl",
        *,
        compression: str = "auto",
        client: Any = None,
    ) -> None:
        self.spec = os.fspath(path)
        self.strict, self.format = strict, format
        self.compression, self.client = compression, client
        self.export = False
        self.src: BinaryIO | None = None
        self.tmp: Any = None

    @property
    def rewinds(self) -> bool:
        """Whether the input seeks back cheaply: a plain local file."""
        return (
            self.spec != "-" and not is_s3(self.spec) and codec(self.spec, self.compression) is None
        )

    def __enter__(self) -> BinaryIO:
        src = self.src = open_source(self.spec, self.compression, client=self.client)
        seekable = self.rewinds and src.seekable()
        head = b""
        if self.format == "jsonl":
            head = src.readline(MAX_LINE_BYTES + 1)
            self.export = looks_like_export(head)
        if seekable:
            src.seek(0)
            return src
        if self.strict or self.export:
            self.tmp = tempfile.TemporaryFile()
            self.tmp.write(head)
            shutil.copyfileobj(src, self.tmp, 1024 * 1024)
            self.tmp.seek(0)
            return self.tmp  # type: ignore[no-any-return]
        return io.BufferedReader(PrefixedStream(head, src)) if head else src

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            self.tmp.close()
        if self.src is not None:
            close_source(self.spec, self.src)


def input_size(stream: BinaryIO) -> int | None:
    """The size of a regular file (None for a pipe, an S3 or a decompressed stream: a resume
    compares those by digest only)."""
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None
