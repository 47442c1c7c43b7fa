"""The pinned download against a misbehaving HTTP server on 127.0.0.1: bounded retries with back-off, then one
clear error; nothing partial kept."""
import http.server
import socket
import threading
import zipfile

import pytest

from bloodcells.data import sources
from bloodcells.core.errors import UserError

CONTENT = b"x" * 5000


class Misbehaving(http.server.BaseHTTPRequestHandler):
    """GET /<behaviour>: ok, stall, 500, 404, short (cut after 100 bytes), flaky (500 once, then ok)."""
    seen = {}
    files = {}

    def do_GET(self):
        count = Misbehaving.seen[self.path] = Misbehaving.seen.get(self.path, 0) + 1
        behaviour = self.path.strip("/").split(".")[0]
        if behaviour == "stall":
            threading.Event().wait(3)  # not time.sleep: the tests record the back-off by patching it
        if behaviour in ("500", "404") or (behaviour == "flaky" and count == 1):
            self.send_error(int(behaviour) if behaviour != "flaky" else 500)
            return
        body = Misbehaving.files.get(self.path, CONTENT)
        if callable(body):
            body = body(count)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:100] if behaviour == "short" else body)
        self.wfile.flush()
        if behaviour == "short":
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Misbehaving.seen, Misbehaving.files = {}, {}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def waits(monkeypatch):
    slept = []
    monkeypatch.setattr(sources.time, "sleep", slept.append)
    return slept


def refused_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/nothing-listens.zip"  # closed again: connections are refused


@pytest.mark.parametrize("path, reason", [
    ("/stall.zip", "timed out"),
    ("/500.zip", "HTTP 500"),
    ("/short.zip", "closed 4900 bytes before the end"),
    (None, "Connection refused"),
])
def test_a_failing_download_is_retried_with_back_off_then_one_clear_error(server, waits, tmp_path, path, reason):
    url = server + path if path else refused_url()
    dest = tmp_path / "archive.zip"
    with pytest.raises(UserError, match="cannot download") as raised:
        sources.download(url, dest, timeout=1, retries=3)
    assert reason in str(raised.value) and "after 3 tries" in str(raised.value)
    assert "local copy" in str(raised.value)  # what to do without network
    assert waits == [2, 4]  # back-off between the three tries
    assert not dest.exists()
    if path:
        assert Misbehaving.seen[path] == 3


def test_a_missing_file_is_not_retried(server, waits, tmp_path):
    with pytest.raises(UserError, match=r"HTTP 404 .* after 1 tries"):
        sources.download(server + "/404.zip", tmp_path / "a.zip", timeout=1, retries=3)
    assert waits == [] and not (tmp_path / "a.zip").exists()


def test_a_server_error_once_is_retried_and_the_download_completes(server, waits, tmp_path):
    sources.download(server + "/flaky.zip", tmp_path / "a.zip", timeout=1, retries=3)
    assert (tmp_path / "a.zip").read_bytes() == CONTENT and waits == [2]


def bccd_files(tmp_path):
    """A one-image BCCD layout as the three pinned downloads serve it, and its manifest."""
    root = tmp_path / "upstream"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "JPEGImages/BloodImage_00000.jpg").write_bytes(b"jpeg bytes")
    (root / "Annotations/BloodImage_00000.xml").write_text("<annotation/>")
    (root / "labels.csv").write_text(",Image,Category\n,0,MONOCYTE\n")
    manifest = tmp_path / "bccd.sha256"
    sources.write_manifest(root, manifest)
    served = {}
    for key, folder in (("images", "JPEGImages"), ("annotations", "Annotations")):
        archive = tmp_path / f"{key}.zip"
        with zipfile.ZipFile(archive, "w") as zipped:
            for item in (root / folder).iterdir():
                zipped.write(item, f"top/{folder}/{item.name}")
        served[f"/ok-{key}.zip"] = archive.read_bytes()
    served["/ok-labels.csv"] = (root / "labels.csv").read_bytes()
    return served, manifest


def bccd_urls(base):
    return {key: f"{base}/ok-{key}.{'csv' if key == 'labels' else 'zip'}" for key in ("images", "annotations", "labels")}


def test_a_file_with_the_wrong_hash_is_fetched_again(server, waits, tmp_path):
    served, manifest = bccd_files(tmp_path)
    good = served["/ok-labels.csv"]
    Misbehaving.files = {**served, "/ok-labels.csv": lambda count: good.replace(b"MONOCYTE", b"MONOCYTX")
                         if count == 1 else good}  # changed on the way once
    dest = tmp_path / "raw"
    dest.mkdir()
    sources.fetch_bccd(dest, bccd_urls(server), manifest, timeout=1, retries=3)
    assert (dest / "labels.csv").read_bytes() == good and waits == [2]


def test_a_file_that_keeps_the_wrong_hash_is_an_error_after_the_retries(server, waits, tmp_path):
    served, manifest = bccd_files(tmp_path)
    Misbehaving.files = {**served, "/ok-labels.csv": b",Image,Category\n,0,LYMPHOCYTE\n"}
    dest = tmp_path / "raw"
    dest.mkdir()
    with pytest.raises(UserError, match="labels.csv: SHA-256 does not match the manifest"):
        sources.fetch_bccd(dest, bccd_urls(server), manifest, timeout=1, retries=2)
    assert Misbehaving.seen["/ok-labels.csv"] == 2 and waits == [2]
