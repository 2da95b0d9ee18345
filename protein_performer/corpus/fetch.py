"""``protein-performer fetch``: download a UniProt proteome or query as gzip FASTA.

Uses UniProt's REST stream endpoint::

    {base_url}/uniprotkb/stream?query=proteome:UP000000625&format=fasta&compressed=true

The body is streamed (urllib, no extra dependency) into ``FILE.part``, every byte as it
arrives (so a stall loses nothing). A broken connection is retried with exponential backoff,
resuming with an HTTP ``Range`` header when the server answers ``206 Partial Content``
(otherwise the download restarts); 5xx and 429 answers are retried too. ``FILE.part`` becomes
``FILE`` only after its size matches ``Content-Length`` and it decompresses fully as FASTA
with at least one record. Limits: ``timeout`` per socket operation, ``deadline`` for the
whole download (all attempts), ``max_bytes`` for the body; only http(s) URLs are accepted.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from protein_performer.corpus.fasta import compression_of, count_fasta_records

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://rest.uniprot.org"
CHUNK = 1 << 16
DEFAULT_MAX_BYTES = 8 << 30
"""8 GiB: E. coli's proteome is 1.3 MB gzip and all of UniProtKB/Swiss-Prot about 90 MB."""
DEFAULT_DEADLINE = 6 * 3600.0
_RETRYABLE = (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError)


@dataclass(frozen=True)
class FetchResult:
    path: Path
    records: int
    bytes: int
    attempts: int


class _Retry(Exception):
    """A transient failure: try again (resuming when possible)."""


def check_http_url(url: str) -> None:
    """Raise ``ValueError`` unless ``url`` is an http(s) URL with a host."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http(s) URL; --base-url must look like {DEFAULT_BASE_URL}")


def stream_url(query: str, base_url: str = DEFAULT_BASE_URL) -> str:
    check_http_url(base_url)
    params = urllib.parse.urlencode({"query": query, "format": "fasta", "compressed": "true"})
    return f"{base_url.rstrip('/')}/uniprotkb/stream?{params}"


@dataclass(frozen=True)
class _Limits:
    timeout: float
    """Seconds per socket operation."""
    seconds: float
    """Seconds for the whole download (``--deadline``)."""
    ends: float
    """``time.monotonic()`` by which the whole download must be done."""
    max_bytes: int


def fetch(url: str, out: Path, *, retries: int = 5, backoff: float = 2.0, timeout: float = 60.0,
          deadline: float = DEFAULT_DEADLINE, max_bytes: int = DEFAULT_MAX_BYTES) -> FetchResult:
    """Download ``url`` (gzip FASTA) to ``out`` through ``out.part``; see the module docstring.

    ``deadline``: seconds for the whole download, retries included; ``max_bytes``: the largest
    body accepted."""
    check_http_url(url)
    if timeout <= 0 or deadline <= 0 or max_bytes <= 0:
        raise ValueError(f"timeout ({timeout}), deadline ({deadline}) and max_bytes ({max_bytes}) must be positive")
    out = Path(out)
    part = out.with_name(out.name + ".part")
    out.parent.mkdir(parents=True, exist_ok=True)
    limits = _Limits(timeout, deadline, time.monotonic() + deadline, max_bytes)
    for attempt in range(1, retries + 2):
        try:
            _download(url, part, limits)
            break
        except _Retry as err:
            if attempt > retries:
                raise RuntimeError(f"{url}: download failed after {attempt} attempts ({err}); "
                                   f"rerun the same command to resume from {part}") from err
            delay = min(backoff * 2 ** (attempt - 1), max(0.0, limits.ends - time.monotonic()))
            log.warning("attempt %d failed (%s); retrying in %.1f s", attempt, err, delay)
            time.sleep(delay)
            _check_deadline(url, part, limits)
    size = part.stat().st_size
    records = _validate(part, url)
    os.replace(part, out)
    log.info("saved %s: %d records, %d bytes (gzip)", out, records, size)
    return FetchResult(out, records, size, attempt)


def _check_deadline(url: str, part: Path, limits: _Limits) -> None:
    if time.monotonic() > limits.ends:
        have = part.stat().st_size if part.exists() else 0
        raise RuntimeError(f"{url}: not done within the deadline of {limits.seconds:g} s ({have:,} bytes kept "
                           f"in {part}); rerun the same command to resume, or raise --deadline")


def _too_big(url: str, part: Path, size: int, limits: _Limits) -> RuntimeError:
    part.unlink(missing_ok=True)
    return RuntimeError(f"{url}: the body is over the limit of {limits.max_bytes:,} bytes ({size:,}); "
                        "check the query, or raise --max-bytes")


def _download(url: str, part: Path, limits: _Limits) -> None:
    """One request: append to (resume) or rewrite ``part``; raise ``_Retry`` on transient failures."""
    timeout = max(0.001, min(limits.timeout, limits.ends - time.monotonic()))
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "protein-performer", "Accept-Encoding": "identity"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # our partial file is not a prefix the server knows: restart
            part.unlink()
            raise _Retry("server refused the resume range (416); restarting") from err
        if err.code >= 500 or err.code == 429:
            raise _Retry(f"HTTP {err.code} {err.reason}") from err
        raise RuntimeError(f"{url}: HTTP {err.code} {err.reason}: {err.read(300).decode('utf-8', 'replace')!r}; "
                           "check the query (UniProt query syntax) and the base URL") from err
    except _RETRYABLE as err:
        raise _Retry(f"connection failed: {err}") from err

    with response:
        if response.status == 206 and have:
            total = _total_from_content_range(response.headers.get("Content-Range"))
            mode, start = "ab", have
            log.info("resuming %s at byte %d", part, have)
        else:
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            mode, start = "wb", 0
        if total is not None and total > limits.max_bytes:
            raise _too_big(url, part, total, limits)
        received = start
        try:
            with open(part, mode) as fh:
                # read1: whatever has arrived (up to CHUNK), so a stall or a drop loses no bytes.
                while chunk := response.read1(CHUNK):
                    fh.write(chunk)
                    received += len(chunk)
                    if received > limits.max_bytes:
                        raise _too_big(url, part, received, limits)
                    if time.monotonic() > limits.ends:
                        break
        except _RETRYABLE as err:
            raise _Retry(f"connection lost after {received} bytes: {err}") from err
        _check_deadline(url, part, limits)
    if total is not None and received != total:
        raise _Retry(f"got {received} of {total} bytes")


def _total_from_content_range(value: str | None) -> int | None:
    match = re.fullmatch(r"bytes \d+-\d+/(\d+)", (value or "").strip())
    return int(match.group(1)) if match else None


def _validate(part: Path, url: str) -> int:
    """Records in ``part``; it must be gzip FASTA with at least one record (else it is removed)."""
    try:
        if compression_of(part) != "gzip":
            raise ValueError(f"{part}: the server did not send gzip data")
        records = count_fasta_records(part)
    except ValueError as err:
        part.unlink(missing_ok=True)
        raise RuntimeError(f"{url}: downloaded data is not a complete gzip FASTA ({err}); "
                           "check the URL and try again") from err
    if records == 0:
        part.unlink(missing_ok=True)
        raise RuntimeError(f"{url}: no records; check the query")
    return records


# ---------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--proteome", help="UniProt proteome id, e.g. UP000000625 (E. coli K-12)")
    from protein_performer.cli_args import deprecated_alias

    deprecated_alias(what, what.add_argument(
        "--uniprot-query", help="a UniProtKB query, e.g. 'organism_id:83333 AND reviewed:true'"), "--query")
    parser.add_argument("--out", type=Path, required=True, help="output file (gzip FASTA), e.g. data/raw/x.fasta.gz")
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help="UniProt REST base URL")
    parser.add_argument("--retries", type=int, default=5, help="retries on connection errors and 5xx answers")
    parser.add_argument("--backoff", type=float, default=2.0, help="first retry delay in seconds (doubles)")
    parser.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds (per read)")
    parser.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE,
                        help=f"seconds for the whole download, retries included (default {DEFAULT_DEADLINE:g})")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                        help=f"largest download accepted, in bytes (default {DEFAULT_MAX_BYTES:,})")


def run(args: argparse.Namespace) -> int:
    if args.proteome and not re.fullmatch(r"UP\d{9}", args.proteome):
        raise ValueError(f"--proteome {args.proteome!r} is not a UniProt proteome id (UP followed by 9 digits)")
    query = f"proteome:{args.proteome}" if args.proteome else args.uniprot_query
    url = stream_url(query, args.base_url)
    log.info("downloading %s", url)
    fetch(url, args.out, retries=args.retries, backoff=args.backoff, timeout=args.timeout, deadline=args.deadline,
          max_bytes=args.max_bytes)
    return 0
