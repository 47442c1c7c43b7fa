import functools
import importlib.util
import http.server
import threading
import zipfile
from pathlib import Path

import pytest

from bloodcells.data import sources, synthetic
from bloodcells.core.errors import UserError
from bloodcells.data.layouts import dataset_master
from conftest import set_params, stage


@pytest.fixture
def dataset(tmp_path):
    """A small dataset-master folder made by the synthetic generator."""
    root = tmp_path / "dataset"
    synthetic.generate(root, per_class=3, size=(96, 72), seed=0)
    return root


@pytest.fixture
def server(tmp_path):
    """A static HTTP server on 127.0.0.1 serving tmp_path/www; yields (base_url, www)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    httpd.shutdown()
    httpd.server_close()


def publish_like_upstream(dataset, www):
    """Lay the dataset out as the three pinned downloads are: two GitHub archives and a CSV."""
    with zipfile.ZipFile(www / "images.zip", "w") as zipped:
        for image in sorted((dataset / "JPEGImages").iterdir()):
            zipped.write(image, f"dataset-bebbc65/JPEGImages/{image.name}")
    with zipfile.ZipFile(www / "annotations.zip", "w") as zipped:
        for xml in sorted((dataset / "Annotations").iterdir()):
            zipped.write(xml, f"BCCD_Dataset-d272fb1/BCCD/Annotations/{xml.name}")
        # the annotation archive also carries images; only the images archive's are used
        zipped.writestr("BCCD_Dataset-d272fb1/BCCD/JPEGImages/BloodImage_00000.jpg", b"other bytes")
    (www / "labels.csv").write_bytes((dataset / "labels.csv").read_bytes())


def urls(base):
    return {"images": f"{base}/images.zip", "annotations": f"{base}/annotations.zip", "labels": f"{base}/labels.csv"}


def test_bccd_download_verifies_every_file(dataset, server, tmp_path):
    base, www = server
    publish_like_upstream(dataset, www)
    manifest = tmp_path / "bccd.sha256"
    count = sources.write_manifest(dataset, manifest)
    dest = tmp_path / "raw"
    sources.fetch_bccd(dest, urls(base), manifest, timeout=5, retries=1)
    assert len(dataset_master.layout_files(dest)) == count == 1 + 2 * 12
    for rel in dataset_master.layout_files(dataset):
        assert (dest / rel).read_bytes() == (dataset / rel).read_bytes()


def test_bccd_download_rejects_a_changed_file(dataset, server, tmp_path):
    base, www = server
    manifest = tmp_path / "bccd.sha256"
    sources.write_manifest(dataset, manifest)
    (dataset / "labels.csv").write_text(",Image,Category\n,0,MONOCYTE\n")
    publish_like_upstream(dataset, www)
    with pytest.raises(UserError, match="labels.csv: SHA-256 does not match"):
        sources.fetch_bccd(tmp_path / "raw", urls(base), manifest, timeout=5, retries=1)


def test_bccd_download_reports_a_missing_file(dataset, server, tmp_path):
    base, www = server
    manifest = tmp_path / "bccd.sha256"
    sources.write_manifest(dataset, manifest)
    (dataset / "Annotations" / "BloodImage_00003.xml").unlink()
    publish_like_upstream(dataset, www)
    with pytest.raises(UserError, match="1 file.*missing.*Annotations/BloodImage_00003.xml"):
        sources.fetch_bccd(tmp_path / "raw", urls(base), manifest, timeout=5, retries=1)


def test_fetch_stage_without_network_fails_cleanly(project, server):
    base, _ = server  # nothing published: every download is a 404
    set_params(project, {"data": {"source": "bccd"}, "fetch": {"urls": urls(base), "retries": 1, "timeout": 5}})
    result = stage(project, "fetch", check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot download")
    assert "'kaggle'" in lines[0] and "'synthetic'" in lines[0] and "local copy" in lines[0]
    assert not (project / "data" / "raw").exists()
    assert not [p for p in (project / "data").iterdir() if p.name.startswith(".raw")]


def kaggle_zip(dataset, path):
    """The zip from Kaggle's page: dataset-master/dataset-master/... plus dataset2-master."""
    with zipfile.ZipFile(path, "w") as zipped:
        for rel in dataset_master.layout_files(dataset):
            zipped.write(dataset / rel, f"dataset-master/dataset-master/{rel.as_posix()}")
        zipped.writestr("dataset2-master/dataset2-master/labels.csv", ",Image,Category\n")
        zipped.writestr("dataset2-master/dataset2-master/images/TRAIN/x.jpeg", b"x")
    return path


def test_local_zip_from_kaggle(dataset, tmp_path):
    dest = tmp_path / "raw"
    dest.mkdir()
    sources.import_local(kaggle_zip(dataset, tmp_path / "archive.zip"), dest)
    assert dataset_master.layout_files(dest) == dataset_master.layout_files(dataset)
    assert (dest / "labels.csv").read_bytes() == (dataset / "labels.csv").read_bytes()


def test_local_folder_nested_and_home_relative(dataset, tmp_path, monkeypatch):
    nested = tmp_path / "home" / "Downloads" / "dataset-master"
    nested.parent.mkdir(parents=True)
    dataset.rename(nested)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    dest = tmp_path / "raw"
    dest.mkdir()
    sources.import_local("~/Downloads", dest)
    assert len(list((dest / "JPEGImages").glob("*.jpg"))) == 12


def test_local_zip_without_labels(tmp_path):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("dataset-master/JPEGImages/BloodImage_00000.jpg", b"x")
    with pytest.raises(UserError, match="no labels.csv"):
        sources.import_local(archive, tmp_path)


def test_local_path_that_does_not_exist(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        sources.import_local(tmp_path / "nowhere", tmp_path)


def test_fetch_stage_from_relative_local_path(project, dataset):
    set_params(project, {"data": {"source": str(Path("..") / ".." / dataset.relative_to(project.parent.parent))}})
    result = stage(project, "fetch")
    assert "fetched 12 images" in result.stdout
    assert len(list((project / "data/raw/Annotations").glob("*.xml"))) == 12


@pytest.mark.parametrize("source,message", [("mnist", "unknown source 'mnist'"),
                                            ("./missing-folder", "does not exist")])
def test_fetch_stage_rejects_bad_sources(project, source, message):
    set_params(project, {"data": {"source": source}})
    result = stage(project, "fetch", check=False)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "data" / "raw").exists()


@pytest.mark.skipif(importlib.util.find_spec("kaggle") is not None, reason="the kaggle client is installed")
def test_kaggle_source_without_client_says_how_to_install(project):
    set_params(project, {"data": {"source": "kaggle"}})
    result = stage(project, "fetch", check=False)
    assert result.returncode == 2 and "pip install kaggle" in result.stderr


def test_a_damaged_zip_is_one_line(dataset, tmp_path):
    archive = kaggle_zip(dataset, tmp_path / "archive.zip")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])  # cut short
    with pytest.raises(UserError, match="is not a readable zip archive .damaged or cut short.; download it again"):
        sources.import_local(archive, tmp_path / "raw")


def test_a_zip_with_a_damaged_member_is_one_line(dataset, tmp_path):
    archive = kaggle_zip(dataset, tmp_path / "archive.zip")
    data = bytearray(archive.read_bytes())
    start = data.index(b"labels.csv") + 200  # inside the compressed members, before the directory at the end
    data[start:start + 400] = bytes(400)
    archive.write_bytes(bytes(data))
    dest = tmp_path / "raw"
    dest.mkdir()
    with pytest.raises(UserError, match="damaged zip archive"):
        sources.import_local(archive, dest)


def test_an_unreadable_local_copy_is_one_line(dataset, tmp_path, monkeypatch):
    def refuse(source, target):
        raise PermissionError(13, "Permission denied", str(source))

    monkeypatch.setattr(sources.shutil, "copyfile", refuse)  # tests run as root, where chmod 000 still reads
    dest = tmp_path / "raw"
    dest.mkdir()
    with pytest.raises(UserError, match=r"cannot read .*labels.csv \(Permission denied\); check that it exists"):
        sources.import_local(dataset, dest)


@pytest.mark.parametrize("spoil, message", [
    (lambda copy: (copy / "JPEGImages/BloodImage_00001.jpg").unlink() or
     (copy / "JPEGImages/BloodImage_00001.jpg").symlink_to(copy / "gone.jpg"),
     "data.source: cannot read"),  # a dangling link: a file that is listed but cannot be read
    ("zip", "is not a readable zip archive (damaged or cut short); download it again"),
])
def test_fetch_stage_with_an_unreadable_copy_is_one_line_and_keeps_nothing(project, dataset, tmp_path, spoil, message):
    source = dataset
    if spoil == "zip":
        source = kaggle_zip(dataset, tmp_path / "archive.zip")
        source.write_bytes(source.read_bytes()[:1000])
    else:
        spoil(dataset)
    set_params(project, {"data": {"source": str(source)}})
    result = stage(project, "fetch", check=False)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (project / "data/raw").exists() and not list((project / "data").glob(".raw.*"))
