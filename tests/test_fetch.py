"""``fetch`` against a real local HTTP server (127.0.0.1, a thread) serving the E. coli file.

No test touches the internet: the server answers UniProt's stream URL path with the shared
proteome, and can drop the connection mid-file, answer 500, or ignore ``Range``.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from protein_performer import cli
from protein_performer.corpus.fetch import fetch, stream_url


@dataclass
class Behaviour:
    data: bytes
    failures: list[str] = field(default_factory=list)
    """What the next requests do, one entry each: "500", "drop" (half the body, then close), "html",
    "endless" (no Content-Length, bytes until the client hangs up), "drip" (100 bytes every 0.05 s),
    "stall" (1000 bytes, then silence until the client gives up)."""
    ranges: bool = True
    requests: list[dict] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        behaviour: Behaviour = self.server.behaviour  # type: ignore[attr-defined]
        url = urllib.parse.urlsplit(self.path)
        params = urllib.parse.parse_qs(url.query)
        failure = behaviour.failures.pop(0) if behaviour.failures else None
        entry = {"path": url.path, "params": params, "range": self.headers.get("Range"), "failure": failure}
        behaviour.requests.append(entry)
        if url.path != "/uniprotkb/stream" or params.get("format") != ["fasta"] or params.get("compressed") != ["true"]:
            return self._reply(404, b"not found")
        if failure == "500":
            return self._reply(500, b"internal error")
        if failure == "html":
            return self._reply(200, b"<html>maintenance</html>")
        if failure in ("endless", "drip", "stall"):
            return self._trickle(failure, behaviour.data)
        data, start = behaviour.data, 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and behaviour.ranges:
            start = int(match.group(1))
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/x-gzip")
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        entry["status"] = 206 if start else 200
        if failure == "drop":
            self.wfile.write(data[start : start + (len(data) - start) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(data[start:])

    def _trickle(self, failure: str, data: bytes) -> None:
        """Bounded loops: every mode stops after a few seconds at most, or when the client leaves."""
        self.send_response(200)
        if failure != "endless":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            if failure == "endless":
                for _ in range(10_000):  # up to 640 MB, far past any limit a test sets
                    self.wfile.write(b"\0" * 65536)
            elif failure == "drip":
                for i in range(100):
                    self.wfile.write(data[i * 100 : (i + 1) * 100])
                    self.wfile.flush()
                    time.sleep(0.05)
            else:
                self.wfile.write(data[:1000])
                self.wfile.flush()
                time.sleep(2.0)
        except OSError:
            pass  # the client hung up, as it should
        self.close_connection = True

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(ecoli_fasta):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.behaviour = Behaviour(ecoli_fasta.read_bytes())  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def base_url(httpd) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def url_for(httpd) -> str:
    return stream_url("proteome:UP000000625", base_url(httpd))


def test_plain_download(server, tmp_path, ecoli_fasta):
    out = tmp_path / "ecoli.fasta.gz"
    result = fetch(url_for(server), out, backoff=0)
    assert out.read_bytes() == ecoli_fasta.read_bytes()
    assert (result.records, result.bytes, result.attempts) == (4352, ecoli_fasta.stat().st_size, 1)
    assert not (tmp_path / "ecoli.fasta.gz.part").exists()
    assert server.behaviour.requests[0]["params"]["query"] == ["proteome:UP000000625"]


def test_dropped_connection_resumes_with_range(server, tmp_path, ecoli_fasta):
    server.behaviour.failures = ["drop"]
    out = tmp_path / "ecoli.fasta.gz"
    result = fetch(url_for(server), out, backoff=0)
    first, second = server.behaviour.requests
    half = ecoli_fasta.stat().st_size // 2
    assert first["range"] is None and first["failure"] == "drop"
    assert second["range"] == f"bytes={half}-" and second["status"] == 206
    assert out.read_bytes() == ecoli_fasta.read_bytes() and result.attempts == 2 and result.records == 4352


def test_server_without_range_support_restarts(server, tmp_path, ecoli_fasta):
    server.behaviour.failures, server.behaviour.ranges = ["drop"], False
    out = tmp_path / "ecoli.fasta.gz"
    fetch(url_for(server), out, backoff=0)
    assert [r["status"] for r in server.behaviour.requests] == [200, 200]
    assert out.read_bytes() == ecoli_fasta.read_bytes()


def test_500_then_success(server, tmp_path, ecoli_fasta):
    server.behaviour.failures = ["500"]
    out = tmp_path / "ecoli.fasta.gz"
    result = fetch(url_for(server), out, backoff=0)
    assert [r["failure"] for r in server.behaviour.requests] == ["500", None]
    assert out.read_bytes() == ecoli_fasta.read_bytes() and result.attempts == 2


def test_gives_up_after_retries_and_keeps_part(server, tmp_path):
    server.behaviour.failures = ["drop", "500", "500"]
    out = tmp_path / "ecoli.fasta.gz"
    with pytest.raises(RuntimeError, match=r"failed after 3 attempts.*rerun the same command to resume"):
        fetch(url_for(server), out, retries=2, backoff=0)
    assert not out.exists() and (tmp_path / "ecoli.fasta.gz.part").stat().st_size > 0
    fetch(url_for(server), out, backoff=0)  # the rerun resumes the partial file
    assert server.behaviour.requests[-1]["status"] == 206 and out.stat().st_size == len(server.behaviour.data)


def test_not_gzip_fasta_is_rejected(server, tmp_path):
    server.behaviour.failures = ["html"]
    out = tmp_path / "ecoli.fasta.gz"
    with pytest.raises(RuntimeError, match="not a complete gzip FASTA"):
        fetch(url_for(server), out, backoff=0)
    assert list(tmp_path.iterdir()) == []


def test_client_error_is_not_retried(server, tmp_path):
    url = f"{base_url(server)}/wrong/path"
    with pytest.raises(RuntimeError, match="HTTP 404"):
        fetch(url, tmp_path / "x.fasta.gz", backoff=0)
    assert len(server.behaviour.requests) == 1


def test_cli(server, tmp_path, ecoli_fasta, capsys):
    out = tmp_path / "raw" / "ecoli.fasta.gz"
    assert cli.main(["fetch", "--proteome", "UP000000625", "--out", str(out), "--base-url", base_url(server),
                     "--backoff", "0"]) == 0
    assert out.read_bytes() == ecoli_fasta.read_bytes()
    assert cli.main(["fetch", "--uniprot-query", "organism_id:83333 AND reviewed:true", "--out", str(tmp_path / "q.fasta.gz"),
                     "--base-url", base_url(server), "--backoff", "0"]) == 0
    assert server.behaviour.requests[-1]["params"]["query"] == ["organism_id:83333 AND reviewed:true"]
    assert cli.main(["fetch", "--proteome", "E_COLI", "--out", str(out)]) == 1
    assert "not a UniProt proteome id" in capsys.readouterr().err


# ------------------------------------------------------------------ limits (issue 13, item 9)


def test_endless_body_stops_at_max_bytes(server, tmp_path):
    server.behaviour.failures = ["endless"]
    with pytest.raises(RuntimeError, match=r"over the limit of 1,000,000 bytes.*--max-bytes"):
        fetch(url_for(server), tmp_path / "x.fasta.gz", retries=0, max_bytes=1_000_000)
    assert list(tmp_path.iterdir()) == []


def test_drip_feed_trips_the_overall_deadline(server, tmp_path):
    server.behaviour.failures = ["drip"]
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"deadline of 0.5 s .*bytes kept.*--deadline"):
        fetch(url_for(server), tmp_path / "x.fasta.gz", retries=3, backoff=0, timeout=2, deadline=0.5)
    assert time.monotonic() - start < 2.5
    assert (tmp_path / "x.fasta.gz.part").stat().st_size >= 100  # kept for the resume


def test_bytes_before_a_stall_are_kept_and_resumed(server, tmp_path, ecoli_fasta):
    server.behaviour.failures = ["stall"]
    out = tmp_path / "x.fasta.gz"
    with pytest.raises(RuntimeError, match="failed after 1 attempts"):
        fetch(url_for(server), out, retries=0, timeout=0.3)
    assert (tmp_path / "x.fasta.gz.part").stat().st_size == 1000
    fetch(url_for(server), out, backoff=0)
    assert server.behaviour.requests[-1]["range"] == "bytes=1000-" and out.read_bytes() == ecoli_fasta.read_bytes()


@pytest.mark.parametrize("base", ["file:///etc", "ftp://example.org", "rest.uniprot.org"])
def test_only_http_base_urls(base, tmp_path, capsys):
    assert cli.main(["fetch", "--proteome", "UP000000625", "--out", str(tmp_path / "x.gz"), "--base-url", base]) == 1
    assert "not an http(s) URL" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
