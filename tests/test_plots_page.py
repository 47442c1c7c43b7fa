"""`dvc plots show` / `dvc plots diff` pages draw every data plot with no network, checked in headless Chromium.

The plot data are written by hand at the paths dvc.yaml's plots read (no training), in a copy of the project."""
import http.server
import json
import re
import shutil
import subprocess
import threading

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, git, load_script, make_project, run

vega_page = load_script("vendor/vega/build.py")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
MODELS = ("resnet", "efficientnet", "alexnet")
CLASSES = ["basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet"]
CURVES = ("train/loss", "train/accuracy", "val/loss", "val/accuracy")
DATA_PLOTS = 4 + len(MODELS) + 2  # four training curves, a confusion matrix per model, the ROC and risk-coverage curves


def test_the_committed_page_inlines_the_recorded_vega_files_and_loads_nothing_remote():
    assert vega_page.check() == []
    page = (ROOT / "vendor/vega/template.html").read_text()
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC's CDN script tags have nowhere to go
    assert not re.search(r"<script[^>]+src=", page)
    assert "html_template = ../vendor/vega/template.html" in (ROOT / ".dvc/config").read_text()


def write_plot_data(project, rng, epochs=3):
    for name in MODELS:
        for curve in CURVES:
            path = project / f"metrics/train/{name}/plots/metrics/{curve}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            values = rng.uniform(0.2, 1.0, epochs).round(4)
            pd.DataFrame({"step": range(1, epochs + 1), curve.split("/")[1]: values}).to_csv(path, sep="\t", index=False)
        actual = rng.choice(CLASSES, 40)
        predicted = np.where(rng.uniform(size=40) < 0.8, actual, rng.choice(CLASSES, 40))
        predictions = project / f"metrics/evaluate/predictions/{name}.csv"
        predictions.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"image": [f"IMG_{i}" for i in range(40)], "actual": actual, "predicted": predicted}) \
            .to_csv(predictions, index=False)
        fpr = np.linspace(0, 1, 11)
        pd.DataFrame({"fpr": fpr, "tpr": np.sqrt(fpr).round(4)}).to_csv(
            project / f"metrics/evaluate/predictions/{name}_roc.csv", index=False)
        coverage = np.linspace(0.1, 1, 10)
        pd.DataFrame({"threshold": (1.1 - coverage).round(4), "coverage": coverage.round(4),
                      "accuracy": (1 - 0.2 * coverage ** 2).round(4), "answered": range(1, 11)}).to_csv(
            project / f"metrics/evaluate/predictions/{name}_risk_coverage.csv", index=False)


class RefusingProxy(http.server.BaseHTTPRequestHandler):
    """A proxy that records every request the browser sends out and answers none of them."""
    seen = []

    def refuse(self):
        RefusingProxy.seen.append(f"{self.command} {self.path}")
        self.send_error(403)

    do_GET = do_POST = do_HEAD = do_CONNECT = do_OPTIONS = refuse

    def log_message(self, *args):
        pass


# Chromium's own service calls (update, sign-in, connectivity probes), which it makes whatever the page does and
# which flags cannot stop them all; a new Chromium build adds new ones (156.0.8078.114 probes www.google.com), so
# they are told apart by domain. Any other host, Google's font and library CDNs included, counts as the page's.
BROWSER_SERVICE_DOMAINS = ("google.com", "update.googleapis.com", "gvt1.com", "googleusercontent.com")


def requested_host(request):
    """The host of a proxied request line: `CONNECT host:443` or `GET http://host/path`."""
    target = request.split(" ", 1)[1]
    return re.sub(r"^[a-z]+://", "", target).split("/", 1)[0].rsplit(":", 1)[0].lower()


def browser_service(request):
    host = requested_host(request)
    return any(host == domain or host.endswith("." + domain) for domain in BROWSER_SERVICE_DOMAINS)


def render(page, profile):
    """The DOM of `page` after its scripts ran in headless Chromium, every request sent to a refusing proxy; and
    the requests that tried to leave the machine, less the browser's own service calls."""
    RefusingProxy.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RefusingProxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = subprocess.run(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-default-apps", "--disable-extensions", "--no-pings", "--disable-domain-reliability",
             "--disable-client-side-phishing-detection", "--disable-breakpad", "--disable-field-trial-config",
             "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,Translate,AutofillServerCommunication,"
             "CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions",
             "--allow-pre-commit-input", "--metrics-recording-only", f"--user-data-dir={profile}", f"--proxy-server=http://127.0.0.1:{server.server_port}",
             "--proxy-bypass-list=<-loopback>", "--virtual-time-budget=20000", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    return result.stdout, [r for r in RefusingProxy.seen if not browser_service(r)]


def test_only_the_browser_s_own_service_calls_are_left_out_of_the_page_s_requests():
    assert browser_service("CONNECT www.google.com:443") and browser_service("CONNECT accounts.google.com:443")
    assert browser_service("POST http://update.googleapis.com/service/update2/json?x=1")
    assert not browser_service("CONNECT cdn.jsdelivr.net:443")
    assert not browser_service("CONNECT fonts.googleapis.com:443")  # a page's font: counted
    assert not browser_service("GET http://evilgoogle.com/x")


def vega_plots(dom):
    """{div id: its rendered markup} for each Vega plot of a dumped page."""
    starts = [(m.group(1), m.start()) for m in re.finditer(r'<div id="([^"]+)" class="vega-embed', dom)]
    return {name: dom[start:(starts[i + 1][1] if i + 1 < len(starts) else len(dom))]
            for i, (name, start) in enumerate(starts)}


def drawn_marks(markup):
    """Data marks that Vega drew in an SVG (lines, rectangles, points, areas; not the axes)."""
    return len(re.findall(r'aria-roledescription="(?:line|rect|symbol|area) mark"', markup))


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (.ci/run installs Debian's chromium)")
def test_plots_show_and_diff_draw_every_data_plot_offline_in_a_browser(tmp_path):
    project = make_project(tmp_path)
    rng = np.random.default_rng(0)
    write_plot_data(project, rng)
    git(project, "add", "-f", "metrics")
    git(project, "commit", "-qm", "plot data")
    run(["dvc", "plots", "show", "-o", str(tmp_path / "show")], project)
    write_plot_data(project, rng)  # a second revision in the workspace
    run(["dvc", "plots", "diff", "HEAD", "-o", str(tmp_path / "diff")], project)
    for folder in ("show", "diff"):
        dom, requests = render(tmp_path / folder / "index.html", tmp_path / f"profile-{folder}")
        assert requests == [], f"{folder}: the page sent requests out: {requests}"
        errors = re.search(r'<div id="page-errors">(.*?)</div>', dom, re.S)
        assert errors is not None and errors.group(1).strip() == "", f"{folder}: {errors and errors.group(1)}"
        plots = vega_plots(dom)
        assert len(plots) == DATA_PLOTS, f"{folder}: {sorted(plots)}"
        for name, markup in plots.items():
            assert "<svg" in markup and drawn_marks(markup) > 0, f"{folder}: {name} drew nothing"
        confusion = plots["metrics_evaluate_predictions_alexnet_csv"]
        assert all(f">{label}</text>" in confusion for label in CLASSES)  # 8 class names on the axes
        assert drawn_marks(plots["Training_loss"]) >= len(MODELS)  # a line per model (and per revision)
        line_colours = set(re.findall(r'aria-roledescription="line mark"[^>]*stroke="(#[0-9a-f]{6})"',
                                      plots["Training_loss"]))
        assert len(line_colours) == len(MODELS), f"{folder}: {line_colours}"  # each model its own colour
    # the check can fail: DVC's own page, which loads the libraries from a CDN, is caught and draws nothing
    from dvc_render.html import PAGE_HTML
    (tmp_path / "dvc_default.html").write_text(PAGE_HTML)
    run(["dvc", "plots", "show", "--html-template", str(tmp_path / "dvc_default.html"), "-o", str(tmp_path / "cdn")],
        project)
    dom, requests = render(tmp_path / "cdn" / "index.html", tmp_path / "profile-cdn")
    assert any("cdn.jsdelivr.net" in request for request in requests)
    assert vega_plots(dom) == {}  # vegaEmbed never came: no plot was drawn


def test_a_clone_with_nothing_pulled_draws_the_plots_whose_data_is_in_git(tmp_path):
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(ROOT), str(clone)], tmp_path)
    for rel in ("dvc.yaml", "dvc.lock", ".dvc/config"):  # this working tree's, committed or not
        shutil.copy2(ROOT / rel, clone / rel)
    shown = run(["dvc", "plots", "show", "-o", str(tmp_path / "page")], clone)
    assert (tmp_path / "page/index.html").is_file(), shown.stdout + shown.stderr
    report = json.loads(run(["dvc", "plots", "show", "--json"], clone).stdout)
    drawn = {name for name, plots in report["data"].items() if plots and plots[0].get("content")}
    assert {f"metrics/evaluate/predictions/{name}.csv" for name in MODELS} <= drawn
    confusion = json.dumps(report["data"]["metrics/evaluate/predictions/resnet.csv"][0]["content"])
    assert "percent_of_y" in confusion and '"field": "actual"' in confusion  # coloured by each actual class's share
    missing = {error["name"] for error in report.get("errors", [])}
    assert "plots/evaluate/roc.png" in missing  # named: it needs dvc pull or dvc repro
