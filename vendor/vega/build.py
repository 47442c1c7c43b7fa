"""Write vendor/vega/template.html, the page `dvc plots show` and `dvc plots diff` fill (.dvc/config: plots.html_template),
with Vega, Vega-Lite and vega-embed inlined, so the plots draw with no network.

Usage: python vendor/vega/build.py            # download the pinned npm packages, check them, write the page
       python vendor/vega/build.py --check    # offline: the page's scripts are the recorded files, licences present

Each package is the published npm tarball at the version of PACKAGES, checked against its npm integrity hash (sha512)
before anything is written; the three files are 0.8 MB together, so the page is committed and no clone needs the
network. The versions are the majors that DVC's own page loads from a CDN (dvc-render: vega 5, vega-lite 5,
vega-embed 6), at their last releases.
"""
import argparse
import base64
import hashlib
import io
import json
import re
import sys
import tarfile
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "template.html"
RECORD = HERE / "packages.json"
PACKAGES = [  # name, version, the npm integrity of its tarball, the file the page inlines
    ("vega", "5.33.1", "sha512-1fArfVDUqVbb5z8n+/nVQb+VNBzx8svY6CrsyTK4Ujm4yrd9I1auoKxBAPXLCavY1LcrbHUskQbGUP8gXOzyQw==",
     "build/vega.min.js"),
    ("vega-lite", "5.23.0", "sha512-l4J6+AWE3DIjvovEoHl2LdtCUkfm4zs8Xxx7INwZEAv+XVb6kR6vIN1gt3t2gN2gs/y4DYTs/RPoTeYAuEg6mA==",
     "build/vega-lite.min.js"),
    ("vega-embed", "6.29.0", "sha512-PmlshTLtLFLgWtF/b23T1OwX53AugJ9RZ3qPE2c01VFAbgt3/GSNI/etzA/GzdrkceXFma+FDHNXUppKuM0U6Q==",
     "build/vega-embed.min.js"),
]
SCRIPT = re.compile(r'<script data-package="([^"]+)">\n(.*?)\n</script>', re.S)

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>bloodcells: DVC plots</title>
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
        #page-errors { color: #b00; white-space: pre-wrap; }
    </style>
<!-- Vega, Vega-Lite and vega-embed, inlined from their npm packages (BSD-3-Clause; vendor/vega/LICENSE-*),
     written by vendor/vega/build.py: this page loads nothing from the network. -->
@SCRIPTS@
<script>
    // Every plot as SVG, without the actions that open the online Vega editor; a failure is written on the
    // page (#page-errors), not only to the console.
    function reportPlotError(message) {
        var box = document.getElementById("page-errors");
        if (box) { box.textContent += message + "\\n"; }
        console.error(message);
    }
    window.addEventListener("error", function (event) { reportPlotError("error: " + event.message); });
    var vegaEmbedOfPackage = vegaEmbed;
    vegaEmbed = function (element, spec, options) {
        var settings = Object.assign({renderer: "svg", actions: {export: true, source: false, compiled: false,
                                                                  editor: false}}, options || {});
        return vegaEmbedOfPackage(element, spec, settings).catch(function (error) {
            reportPlotError("plot " + element + ": " + error);
        });
    };
</script>
</head>
<body>
    <div id="page-errors"></div>
    {plot_divs}
</body>
</html>
"""


def download(name, version, integrity):
    url = f"https://registry.npmjs.org/{name}/-/{name}-{version}.tgz"
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != integrity:
        sys.exit(f"error: {url}: integrity {digest} is not the recorded {integrity}; nothing written")
    return tarfile.open(fileobj=io.BytesIO(data))


def read_member(archive, path):
    member = archive.extractfile(f"package/{path}")
    return member.read().decode("utf-8") if member else None


def build():
    scripts, record, licences = [], [], {}
    for name, version, integrity, path in PACKAGES:
        archive = download(name, version, integrity)
        code = read_member(archive, path)
        if "</script" in code.lower():
            sys.exit(f"error: {name}@{version}/{path} contains </script and cannot be inlined; nothing written")
        licence = json.loads(read_member(archive, "package.json"))["license"]
        try:
            licences[name] = read_member(archive, "LICENSE")
        except KeyError:  # vega's package ships none: its licence is the same text, its package.json names it
            licences[name] = None
        scripts.append(f'<script data-package="{name}@{version}">\n{code}\n</script>')
        record.append({"package": f"{name}@{version}", "file": path, "npm_integrity": integrity, "license": licence,
                       "sha256": hashlib.sha256(code.encode()).hexdigest()})
    for name, text in licences.items():
        if text is None:
            donor = next(t for t in licences.values() if t)
            text = (f"The npm package of {name} ships no LICENSE file; its package.json gives BSD-3-Clause, and the\n"
                    f"licence of its repository (github.com/vega/{name}) is this text of the same authors:\n\n{donor}")
        (HERE / f"LICENSE-{name}").write_text(text)
    TEMPLATE.write_text(PAGE.replace("@SCRIPTS@", "\n".join(scripts)))
    RECORD.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {TEMPLATE.relative_to(HERE.parents[1])} ({TEMPLATE.stat().st_size // 1024} KB): "
          + ", ".join(entry["package"] for entry in record))


def check():
    """Problems of the committed page: each inlined script against packages.json, and the licences."""
    record = {entry["package"]: entry for entry in json.loads(RECORD.read_text())}
    found = {package: hashlib.sha256(code.encode()).hexdigest() for package, code in SCRIPT.findall(TEMPLATE.read_text())}
    problems = [f"{package}: not in the page" for package in record if package not in found]
    problems += [f"{package}: sha256 {digest[:12]}... is not the recorded {record[package]['sha256'][:12]}..."
                 for package, digest in found.items() if package in record and digest != record[package]["sha256"]]
    problems += [f"{package}: in the page but not in packages.json" for package in found if package not in record]
    problems += [f"LICENSE-{package.rsplit('@', 1)[0]} missing" for package in record
                 if not (HERE / f"LICENSE-{package.rsplit('@', 1)[0]}").is_file()]
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="check the committed page offline")
    if parser.parse_args().check:
        problems = check()
        if problems:
            sys.exit("error: vendor/vega/template.html: " + " | ".join(problems) + "; run python vendor/vega/build.py")
        print("vendor/vega/template.html: every script is the recorded file of its package")
    else:
        build()


if __name__ == "__main__":
    main()
