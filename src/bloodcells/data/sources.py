"""Where the raw data comes from: the pinned BCCD downloads, a local copy (any layout of bloodcells.data.layouts),
Kaggle, or synthetic. BCCD's downloads, Kaggle and the synthetic stand-in write Kaggle's `dataset-master` layout
(`JPEGImages/BloodImage_NNNNN.jpg`, `Annotations/BloodImage_NNNNN.xml`, `labels.csv`); a local copy keeps its own.
"""
import hashlib
import http.client
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

from tqdm import tqdm

from bloodcells.data import layouts
from bloodcells.core.digests import file_digest
from bloodcells.core.errors import UserError
from bloodcells.data.layouts import dataset_master

KNOWN_SOURCES = ("bccd", "kaggle", "synthetic")
KAGGLE_DATASET = "paultimothymooney/blood-cells"
ALTERNATIVES = (
    "set data.source in params.yaml to a local copy (a Kaggle dataset-master folder or "
    "its zip), 'kaggle' (needs Kaggle credentials) or 'synthetic' (offline demo)"
)


def manifest_text(root):
    return "".join(f"{file_digest(Path(root) / rel)}  {rel.as_posix()}\n" for rel in dataset_master.layout_files(root))


def write_manifest(root, manifest_path):
    """A sha256sum-style manifest of every file of the dataset-master layout below `root`."""
    text = manifest_text(root)
    Path(manifest_path).write_text(text)
    return text.count("\n")


def describe_source(source, manifest_path):
    """data.source as a record may name it: a source name as it is; a local copy never by its path (which belongs
    to one machine) but by what it holds: the pinned download when its files match the manifest, else the
    SHA-256 of its own manifest (or of the zip)."""
    source = str(source)
    if source in KNOWN_SOURCES:
        return source
    path = Path(source).expanduser()
    if path.is_file():
        return f"a local zip (SHA-256 {file_digest(path)[:12]})"
    if path.is_dir():
        names = [p.relative_to(path).as_posix() for p in path.rglob("labels.csv")]
        root = dataset_master.find_root(names)
        if root is None:  # another layout (class folders): every file
            text = "".join(f"{file_digest(p)}  {p.relative_to(path).as_posix()}\n"
                           for p in sorted(path.rglob("*")) if p.is_file())
        else:
            text = manifest_text(path / root)
        manifest_path = Path(manifest_path) if manifest_path else None
        if root is not None and manifest_path and manifest_path.is_file() and text == manifest_path.read_text():
            return f"a local copy byte-identical to the bccd download (every file matches {manifest_path.as_posix()})"
        return f"a local copy (SHA-256 of its files' manifest {hashlib.sha256(text.encode()).hexdigest()[:12]})"
    return "a local copy"


def read_manifest(manifest_path):
    manifest_path = Path(manifest_path)
    if not manifest_path.is_file():
        raise UserError(f"{manifest_path}: manifest not found; restore it from git (git checkout -- {manifest_path})")
    entries = {}
    for line in manifest_path.read_text().splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            entries[rel.strip()] = digest
    return entries


def verify_manifest(root, manifest):
    missing = [rel for rel in manifest if not (Path(root) / rel).is_file()]
    if missing:
        raise UserError(f"{len(missing)} file(s) of the manifest are missing after download, e.g. {missing[0]}; "
                        f"the pinned archive changed or the download was cut: retry, or {ALTERNATIVES}")
    for rel, digest in manifest.items():
        if file_digest(Path(root) / rel) != digest:
            raise UserError(f"{rel}: SHA-256 does not match the manifest; the download is corrupt or the "
                            f"upstream file changed: retry, or {ALTERNATIVES}")


def backoff(attempt):
    """Seconds to wait before try attempt + 1: 2, 4, 8, then 10."""
    return min(2 ** attempt, 10)


def download(url, dest, timeout, retries):
    """Download `url` to `dest` with a progress bar; a stall, refused connection, server error or cut-short
    file is retried `retries` times in all with back-off (a 4xx other than 408/429 is not: it will not change).
    Nothing partial is kept."""
    last_error = None
    for attempt in range(1, retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=Path(url).name[:40],
                          disable=None, leave=False) as bar:
                    for block in iter(lambda: response.read(1 << 16), b""):
                        out.write(block)
                        bar.update(len(block))
                if total is not None and out.tell() != total:
                    raise http.client.IncompleteRead(b"", total - out.tell())
            return
        except urllib.error.HTTPError as error:
            last_error = f"HTTP {error.code} {error.reason}"
            if 400 <= error.code < 500 and error.code not in (408, 429):
                Path(dest).unlink(missing_ok=True)
                break
        except http.client.IncompleteRead as error:
            last_error = f"the connection closed {error.expected} bytes before the end"
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            last_error = getattr(error, "reason", None) or error or type(error).__name__
        Path(dest).unlink(missing_ok=True)
        if attempt < retries:
            time.sleep(backoff(attempt))
    raise UserError(f"cannot download {url} ({last_error}) after {attempt} tries; "
                    f"without network, {ALTERNATIVES}")


def extract_matching(archive, dest, wanted):
    """Extract the members of a zip whose `<folder>/<name>` is a key of `wanted`."""
    with zipfile.ZipFile(archive) as zipped:
        for member in zipped.namelist():
            parts = Path(member).parts
            if len(parts) >= 2 and "/".join(parts[-2:]) in wanted:
                target = Path(dest) / parts[-2] / parts[-1]
                target.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)


def fetch_bccd(dest, urls, manifest_path, timeout=60, retries=3):
    """Download the pinned BCCD archives and keep exactly the files of the manifest. A download that does not
    match the manifest (cut or changed on the way) is fetched again, `retries` times in all."""
    manifest = read_manifest(manifest_path)
    for attempt in range(1, retries + 1):
        try:
            download_bccd(dest, urls, manifest, timeout, retries)
            verify_manifest(dest, manifest)
            return
        except UserError as error:
            if attempt == retries or str(error).startswith("cannot download"):
                raise
            for child in Path(dest).iterdir():  # start again from nothing
                shutil.rmtree(child) if child.is_dir() else child.unlink()
            time.sleep(backoff(attempt))


def download_bccd(dest, urls, manifest, timeout, retries):
    with tempfile.TemporaryDirectory() as downloads:
        for key, folder in (("images", "JPEGImages"), ("annotations", "Annotations")):
            archive = Path(downloads) / f"{key}.zip"
            download(urls[key], archive, timeout, retries)
            try:
                extract_matching(archive, dest, {rel for rel in manifest if rel.startswith(folder + "/")})
            except (zipfile.BadZipFile, zlib.error, EOFError):
                raise UserError(f"{urls[key]} did not return a readable zip archive; retry, or {ALTERNATIVES}")
        download(urls["labels"], Path(dest) / "labels.csv", timeout, retries)


def import_local(source, dest, key="data.source"):
    """Copy a local dataset, a folder or a zip in any layout of bloodcells.data.layouts, into `dest`; returns the
    layout's name. `key`, the parameter that named the copy, begins each error line."""
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(f"{key}: {source} does not exist; give a folder or zip in {layouts.EXPECTED}, "
                        f"or one of {', '.join(KNOWN_SOURCES)}")
    try:
        layout = copy_layout(path, dest, key)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise UserError(f"{key}: {path} is a damaged zip archive ({error}); download it again") from None
    except OSError as error:
        where = error.filename or path
        raise UserError(f"{key}: cannot read {where} ({error.strerror or error}); check that it exists "
                        "and that you may read it") from None
    if layout is dataset_master:
        (dest / "Annotations").mkdir(exist_ok=True)
    return layout.NAME


def copy_layout(path, dest, key="data.source"):
    """Recognise the layout of a folder or zip and copy its files below the layout's root into `dest`."""
    if path.is_dir():
        names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() or p.is_symlink()]
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zipped:
            names = [n for n in zipped.namelist() if not n.endswith("/")]
    elif path.suffix.lower() == ".zip":
        raise UserError(f"{key}: {path} is not a readable zip archive (damaged or cut short); download it again")
    else:
        raise UserError(f"{key}: {path} is neither a folder nor a zip archive")
    layout, root = layouts.recognise(names)
    if layout is None:
        raise UserError(f"{path}: no labels.csv and no class folders found; expected {layouts.EXPECTED}")
    files = [n[len(root):] for n in names if n.startswith(root) and layout.wanted(n[len(root):])]
    problem = layout.check_copy(files, f"{path / root if path.is_dir() else path}")
    if problem:
        raise UserError(problem)
    if path.is_dir():
        for rel in files:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path / root / rel, dest / rel)
    else:
        with zipfile.ZipFile(path) as zipped:
            for rel in files:
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(root + rel) as src, open(dest / rel, "wb") as out:
                    shutil.copyfileobj(src, out)
    return layout


def fetch_kaggle(dest):
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi

        api = KaggleApi()
        api.authenticate()
    except ImportError:
        raise UserError("data.source 'kaggle' needs the optional kaggle package: pip install kaggle")
    except Exception as error:  # the client raises plain OSError/ValueError without credentials
        raise UserError(f"kaggle: cannot authenticate ({error}); put your API token in ~/.kaggle/kaggle.json "
                        "or use a local download as data.source")
    with tempfile.TemporaryDirectory() as downloads:
        api.dataset_download_files(KAGGLE_DATASET, path=downloads, quiet=False)
        archives = list(Path(downloads).glob("*.zip"))
        if not archives:
            raise UserError(f"kaggle: the download of {KAGGLE_DATASET} returned no zip")
        return import_local(archives[0], dest)
