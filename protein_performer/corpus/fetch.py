"""``protein-performer fetch``: download a UniProt proteome or query as gzip FASTA.

Uses UniProt's REST stream endpoint::

    {base_url}/uniprotkb/stream?query=proteome:UP000000625&format=fasta&compressed=true

The body is streamed (urllib, no extra dependency) into ``FILE.part``. A broken connection
is retried with exponential backoff, resuming with an HTTP ``Range`` header when the server
answers ``206 Partial Content`` (otherwise the download restarts); 5xx and 429 answers are
retried too. ``FILE.part`` becomes ``FILE`` only after its size matches ``Content-Length``
and it decompresses fully as FASTA with at least one record.
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
_RETRYABLE = (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError)


@dataclass(frozen=True)
class FetchResult:
    path: Path
    records: int
    bytes: int
    attempts: int


class _Retry(Exception):
    """A transient failure: try again (resuming when possible)."""


def stream_url(query: str, base_url: str = DEFAULT_BASE_URL) -> str:
    params = urllib.parse.urlencode({"query": query, "format": "fasta", "compressed": "true"})
    return f"{base_url.rstrip('/')}/uniprotkb/stream?{params}"


def fetch(url: str, out: Path, *, retries: int = 5, backoff: float = 2.0, timeout: float = 60.0) -> FetchResult:
    """Download ``url`` (gzip FASTA) to ``out`` through ``out.part``; see the module docstring."""
    out = Path(out)
    part = out.with_name(out.name + ".part")
    out.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, retries + 2):
        try:
            _download(url, part, timeout)
            break
        except _Retry as err:
            if attempt > retries:
                raise RuntimeError(f"{url}: download failed after {attempt} attempts ({err}); "
                                   f"rerun the same command to resume from {part}") from err
            delay = backoff * 2 ** (attempt - 1)
            log.warning("attempt %d failed (%s); retrying in %.1f s", attempt, err, delay)
            time.sleep(delay)
    size = part.stat().st_size
    records = _validate(part, url)
    os.replace(part, out)
    log.info("saved %s: %d records, %d bytes (gzip)", out, records, size)
    return FetchResult(out, records, size, attempt)


def _download(url: str, part: Path, timeout: float) -> None:
    """One request: append to (resume) or rewrite ``part``; raise ``_Retry`` on transient failures."""
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
        received = start
        try:
            with open(part, mode) as fh:
                while chunk := response.read(CHUNK):
                    fh.write(chunk)
                    received += len(chunk)
        except _RETRYABLE as err:
            raise _Retry(f"connection lost after {received} bytes: {err}") from err
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
    what.add_argument("--query", help="a UniProtKB query, e.g. 'organism_id:83333 AND reviewed:true'")
    parser.add_argument("--out", type=Path, required=True, help="output file (gzip FASTA), e.g. data/raw/x.fasta.gz")
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help="UniProt REST base URL")
    parser.add_argument("--retries", type=int, default=5, help="retries on connection errors and 5xx answers")
    parser.add_argument("--backoff", type=float, default=2.0, help="first retry delay in seconds (doubles)")
    parser.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds")


def run(args: argparse.Namespace) -> int:
    if args.proteome and not re.fullmatch(r"UP\d{9}", args.proteome):
        raise ValueError(f"--proteome {args.proteome!r} is not a UniProt proteome id (UP followed by 9 digits)")
    query = f"proteome:{args.proteome}" if args.proteome else args.query
    url = stream_url(query, args.base_url)
    log.info("downloading %s", url)
    fetch(url, args.out, retries=args.retries, backoff=args.backoff, timeout=args.timeout)
    return 0
