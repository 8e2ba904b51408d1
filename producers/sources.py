"""Where a load's input comes from: local paths, ``-`` (standard input) and ``s3://`` URLs,
compressed or not, and patterns that name many of them (:func:`expand_sources`).

Everything is streamed: S3 objects through ``smart_open`` (through boto3, so its credential chain,
region, proxies, CA bundle and ``AWS_ENDPOINT_URL_S3`` apply as they do to any boto3 client):
memory stays flat whatever the size. ``.gz``, ``.bz2`` and ``.zst`` are decompressed by
extension (``.zst`` with ``zstandard``, the others with smart_open's codecs), or as
``compression`` says (``auto``, ``none``, ``gz``, ``bz2``, ``zst``). Every
problem opening or listing an input is an :class:`~storage.errors.InputError` in one line,
naming the input; no credential value ever appears in it.
"""

from __future__ import annotations

import fnmatch
import glob
import io
import os
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

import smart_open
import zstandard
from smart_open.compression import compression_wrapper

from storage.errors import InputError
from storage.redact import scrub

COMPRESSIONS = {".gz": ".gz", ".bz2": ".bz2", ".zst": ".zst"}
"""Extension -> smart_open's name of the codec."""
CHOICES = ("auto", "none", "gz", "bz2", "zst")
_WILDCARDS = "*?["


def is_s3(spec: str) -> bool:
    return spec.startswith("s3://")


def codec(spec: str, compression: str = "auto") -> str | None:
    """The codec (``.gz``, ``.bz2``, ``.zst``) of input ``spec``, or None (read as it is)."""
    if compression not in CHOICES:
        raise InputError(f"unknown compression {compression!r} (use {', '.join(CHOICES)})")
    if compression == "none":
        return None
    if compression != "auto":
        return f".{compression}"
    return COMPRESSIONS.get(os.path.splitext(spec)[1].lower())


def s3_client() -> Any:
    """A boto3 S3 client from boto3's own configuration (``AWS_ENDPOINT_URL_S3`` included)."""
    import boto3

    return boto3.client("s3")


def _split(url: str) -> tuple[str, str]:
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket:
        raise InputError(f"no bucket in {url!r} (use s3://bucket/key)")
    return bucket, key


def _why(exc: BaseException) -> str:
    """One scrubbed line of why an S3 call or an open failed."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return scrub(text)[:300]


def _decompressed(raw: Any, how: str | None) -> BinaryIO:
    """``raw`` read through codec ``how`` (None: as it is); closing it closes ``raw``.
    ``.zst`` goes through ``zstandard`` (every frame), the others through smart_open."""
    if how is None:
        return cast(BinaryIO, raw)
    if how == ".zst":
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return cast(BinaryIO, io.BufferedReader(reader, 1024 * 1024))
    return cast(BinaryIO, compression_wrapper(raw, "rb", how))


def open_source(spec: str, compression: str = "auto", *, client: Any = None) -> BinaryIO:
    """Open one input for binary reading, decompressed. ``-`` is standard input (the caller
    must not close it; :func:`close_source` knows). Raises InputError naming the input."""
    how = codec(spec, compression)
    if spec == "-":
        raw: Any = sys.stdin.buffer
        return _decompressed(raw, how)
    if not is_s3(spec):
        try:
            f: Any = open(spec, "rb")  # noqa: SIM115 -- the caller owns and closes it
        except FileNotFoundError:
            raise InputError(f"no such file: {spec}") from None
        except IsADirectoryError:
            raise InputError(f"is a directory: {spec}") from None
        except PermissionError:
            raise InputError(f"permission denied: {spec}") from None
        except OSError as e:
            raise InputError(f"cannot open {spec}: {e.strerror or e}") from None
        return _decompressed(f, how)
    _split(spec)
    params = {"client": client if client is not None else s3_client()}
    try:
        raw = smart_open.open(spec, "rb", compression="disable", transport_params=params)
    except Exception as exc:  # botocore, smart_open and OSError all say it differently
        raise InputError(f"cannot open {spec}: {_why(exc)}") from None
    return _decompressed(raw, how)


def close_source(spec: str, stream: BinaryIO) -> None:
    """Close what :func:`open_source` opened (never standard input itself)."""
    if spec != "-" or stream is not sys.stdin.buffer:
        stream.close()


def _s3_keys(client: Any, url: str) -> Iterator[str]:
    """Keys under an ``s3://bucket/prefix/`` or matching an ``s3://bucket/pat*tern``."""
    bucket, key = _split(url)
    cut = min((key.index(c) for c in _WILDCARDS if c in key), default=len(key))
    prefix, pattern = key[:cut], key if cut < len(key) else None
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents") or []:
                name = obj["Key"]
                if name.endswith("/"):
                    continue  # a "folder" marker
                if pattern is None or fnmatch.fnmatchcase(name, pattern):
                    yield f"s3://{bucket}/{name}"
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot list {url}: {_why(exc)}") from None


def expand_sources(specs: list[str], *, client: Any = None) -> list[str]:
    """Every input the command line names, in the order given: a path or URL stands for
    itself; a pattern (``*``, ``?``, ``[``) or an S3 prefix ending in ``/`` for what it
    matches, sorted by name. ``-`` stands alone. InputError when a pattern matches nothing."""
    if "-" in specs and len(specs) > 1:
        raise InputError("standard input (-) cannot be loaded with other inputs")
    out: list[str] = []
    for spec in specs:
        many = any(c in spec for c in _WILDCARDS) or (is_s3(spec) and spec.endswith("/"))
        if not many:
            out.append(spec)
            continue
        if is_s3(spec):
            found = sorted(_s3_keys(client if client is not None else s3_client(), spec))
        else:
            found = sorted(p for p in glob.glob(spec) if os.path.isfile(p))
        if not found:
            raise InputError(f"nothing matches {spec}")
        out += found
    return out
