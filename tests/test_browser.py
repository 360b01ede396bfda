"""Every notebook's widgets render and respond in JupyterLab 4, in a real headless Chromium.

One isolated JupyterLab server (tests/browser_lab.py) and one Chromium serve the module; each
notebook gets a fresh page. A notebook is copied into the server's folder with its tiny test
parameters (`gentools.test_parameters` in its metadata) injected after its parameters cell, as
papermill injects them, and its `out_dir` pointed inside the temp folder. The test runs all
cells, checks there is no error and no widget that failed to render, checks the widgets that
SHOWS lists are there, drives one control and checks that the output it drives changed.
The compare notebook reuses the tiny runs that one `gentools sweep` makes in the background
(`tiny_runs`), and a last test opens the VAE's executed run from that sweep without running it.

Every notebook in notebooks/ needs an entry in SHOWS: a notebook without one fails, with a
message that says what to add. Screenshots land in $GENTOOLS_SCREENSHOTS, or in a pytest temp
folder; the run prints where. Skip these tests in a quick loop with `-m "not browser"`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import yaml
from browser_lab import (
    CHROMIUM,
    CHROMIUM_ARGS,
    IMAGE_PIXELS,
    PLOT_DATA,
    PLOT_DRAWN,
    Lab,
    descendants,
    error_texts,
    open_notebook,
    run_all,
    wait_gone,
    wait_kernel_idle,
)
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from gentools.runner.params import tiny_parameters

pytestmark = pytest.mark.long  # the suite's longest unit (one server for all): it starts first

# compare.ipynb last: by then the sweep it reuses (`tiny_runs`) has run beside the other tests
NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"),
                   key=lambda p: (p.stem == "compare", p.stem))
PAGE_TIMEOUT_MS = 90_000  # one page action or wait; the machine may be loaded
RUN_ALL_S = 420  # one notebook's Run All at its tiny size
CHANGE_S = 120  # from driving a control to seeing its output change


@dataclass(frozen=True)
class Drive:
    """The control the test drives, and what must change in the cell that shows it."""

    control: str  # "slider" (ArrowRight on its handle), "button" (a click), "text" (type, Enter)
    label: str  # the slider's or text box's description, or the button's text: one on the page
    watch: str  # "image": the cell's image widgets' pixels; "plot": its plotly figures' data;
    #             "text": its HTML widgets' text
    value: str = ""  # what a "text" control gets typed into it
    key: str = "ArrowRight"  # the key a "slider" gets: "ArrowRight" one step, "End" its maximum


@dataclass(frozen=True)
class Shows:
    """What a notebook shows after Run All, each an "at least", and the control to drive."""

    sliders: int  # ipywidgets sliders (IntSlider, FloatSlider)
    buttons: tuple[str, ...]  # texts of buttons that must be there
    plots: int  # plotly figures (FigureWidgets and static figures), each drawn with data
    images: int  # ipywidgets Image widgets holding pixels
    drive: Drive
    audio: int = 0  # ipywidgets Audio players
    reuses: int = 0  # runs the notebook must find in the `tiny_runs` sweep and reuse


SHOWS = {
    "vae": Shows(sliders=5, buttons=("Finished", "Reset", "linear", "spherical"), plots=2,
                 images=2, drive=Drive("slider", "steps", "image")),
    "gan": Shows(sliders=6, buttons=("Finished", "Reset", "linear", "spherical"), plots=1,
                 images=2, drive=Drive("slider", "truncation", "image")),
    "pixelcnn": Shows(sliders=2, buttons=("Finished", "Resample"), plots=1, images=1,
                      drive=Drive("button", "Resample", "image")),
    "flow": Shows(sliders=11, buttons=("Finished", "New samples", "Reset", "linear"), plots=2,
                  images=4, drive=Drive("button", "New samples", "image")),
    "wavenet": Shows(sliders=2, buttons=("Finished", "Generate"), plots=3, images=0, audio=4,
                     drive=Drive("button", "Generate", "plot")),
    "gpt": Shows(sliders=4, buttons=("Finished", "Generate", "Stop"), plots=2, images=0,
                 drive=Drive("button", "Generate", "text")),
    "bert": Shows(sliders=1, buttons=("Finished",), plots=3, images=0,
                  drive=Drive("slider", "top-k", "plot")),
    "diffusion": Shows(sliders=6, buttons=("Finished", "linear", "spherical"), plots=1, images=4,
                       drive=Drive("slider", "guidance", "image")),
    "compare": Shows(sliders=0, buttons=("Fréchet distance", "bits/dim"), plots=2, images=0,
                     drive=Drive("button", "Fréchet distance", "plot"), reuses=6),
}

MISSING = (
    "notebooks/{name}.ipynb has no entry in SHOWS in tests/test_browser.py: add one that says "
    "which sliders, buttons, plotly figures and image widgets it shows after Run All, and which "
    'control to drive, e.g. "{name}": Shows(sliders=1, buttons=("Finished",), plots=2, '
    'images=0, drive=Drive("slider", "<slider description>", "plot")),'
)



def test_every_notebook_has_an_entry():
    """Runs in the quick loop too: a new notebook must join the browser test."""
    stems = {p.stem for p in NOTEBOOKS}
    missing = sorted(stems - set(SHOWS))
    assert not missing, "\n".join(MISSING.format(name=n) for n in missing)
    assert not set(SHOWS) - stems, f"entries for notebooks that are gone: {set(SHOWS) - stems}"


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The isolated JupyterLab server; after the module, it and its kernels must be gone."""
    server = Lab(tmp_path_factory.mktemp("lab"), env={
        "TQDM_DISABLE": "1", "GENTOOLS_THREADS": "1",
        "GENTOOLS_CACHE": os.environ.get("GENTOOLS_CACHE") or str(tmp_path_factory.mktemp("c")),
    })
    before = set(descendants(os.getpid()))
    try:
        server.start()
        # its runtime file lands in the temp runtime folder, not under ~/.local/share/jupyter
        assert list(server.dirs["runtime"].glob("jpserver-*.json")), server.tail()
        yield server
    finally:
        server.stop()
    left = wait_gone(server.pids, timeout=15)
    assert not left, f"processes of the JupyterLab server left behind: {left}"
    assert server.proc.returncode is not None
    ours = wait_gone(set(descendants(os.getpid())) - before, timeout=15)
    assert not ours, f"processes started by the browser tests left behind: {ours}"


@pytest.fixture(scope="module")
def browser(lab):
    """Debian's Chromium, headless, driven by Playwright; closed after the module."""
    from playwright.sync_api import sync_playwright  # a dev dependency: pip install -e .[dev]

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (see .ci/run)")
    pw = sync_playwright().start()
    try:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, env=lab.env)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        pw.stop()


@pytest.fixture(scope="module")
def tiny_runs(lab):
    """A function that returns the runs/ folder holding the seed-0 tiny runs of the image
    notebooks, with the parameters compare.ipynb asks for at size tiny.

    `gentools sweep` makes them on 1 worker (2 would crowd the first browser tests), started
    in the background when the first browser test asks for this fixture; the function waits
    for it. Each is a `gentools run` of its notebook (papermill, run folder, manifest). The
    compare notebook finds and reuses them, and the VAE run is the executed notebook that
    test_executed_run_shows_static_training_curves opens.
    """
    from gentools.runner import compare

    runs = lab.root / "runs"
    n_samples = tiny_parameters(next(p for p in NOTEBOOKS if p.stem == "compare"))["n_samples"]
    spec = {"name": "tiny", "notebooks": {
        fam.notebook: compare.run_parameters(fam, "tiny", 0, "auto", n_samples)
        for fam in compare.FAMILIES}}
    path = lab.folder / "tiny-runs.yaml"
    path.write_text(yaml.safe_dump(spec))
    sweep = subprocess.Popen(
        [sys.executable, "-m", "gentools", "sweep", str(path), "--out", str(runs),
         "--workers", "1", "--no-progress"],
        cwd=lab.root, env=lab.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )

    def finished() -> Path:
        output, _ = sweep.communicate(timeout=600)
        assert sweep.returncode == 0, output[-6000:]
        return runs

    try:
        yield finished
    finally:
        if sweep.poll() is None:
            sweep.kill()
        sweep.communicate()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory, request):
    folder = Path(os.environ.get("GENTOOLS_SCREENSHOTS") or tmp_path_factory.mktemp("screens"))
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    message = f"browser test screenshots: {folder}"
    if reporter is not None:
        reporter.write_line("")
        reporter.write_line(message)
    else:
        print(message)


def page_for(browser, lab: Lab, path: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    return context, open_notebook(context, lab, path, PAGE_TIMEOUT_MS)


# --- one notebook, as a user sees it -------------------------------------------------------


def control(page, drive: Drive):
    exact = re.compile(rf"^\s*{re.escape(drive.label)}\s*$")
    if drive.control == "slider":
        found = page.locator(".widget-slider").filter(
            has=page.locator(".widget-label", has_text=exact))
    elif drive.control == "text":
        found = page.locator(".widget-text").filter(
            has=page.locator(".widget-label", has_text=exact))
    elif drive.control == "button":
        found = page.locator("button.jupyter-button", has_text=exact)
    else:
        raise ValueError(f"unknown control kind {drive.control!r}")
    assert found.count() == 1, (
        f"{drive.control} {drive.label!r}: {found.count()} on the page, the table needs one"
    )
    return found


def watched(cell, watch: str) -> list:
    if watch == "image":
        return cell.locator("img.widget-image").evaluate_all(IMAGE_PIXELS)
    if watch == "plot":
        return cell.locator(".js-plotly-plot").evaluate_all(PLOT_DATA)
    if watch == "text":
        return cell.locator(".widget-html").all_inner_texts()
    raise ValueError(f"unknown watch {watch!r}")


def act(page, found, drive: Drive) -> None:
    found.scroll_into_view_if_needed()
    if drive.control == "slider":
        found.locator(".noUi-handle").focus()
        page.keyboard.press(drive.key)
    elif drive.control == "button":
        found.click()
    else:
        box = found.locator("input")
        box.fill(drive.value)
        box.press("Enter")


def wait_until(read, done, timeout_s: float, what: str):
    """Poll read() until done(value); return the value, or fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not done(value := read()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s:.0f} s for {what}; last seen: {value!r:.300}")
        time.sleep(0.25)
    return value


def prepare(notebook: Path, lab: Lab, **extra) -> str:
    """Copy `notebook` into the server's folder with its tiny parameters (and `extra`)
    injected."""
    params = {**tiny_parameters(notebook), "out_dir": str(lab.folder / "out" / notebook.stem),
              **extra}
    nb = parameterize_notebook(load_notebook_node(str(notebook)), params)
    nbformat.write(nb, lab.root / notebook.name)
    return notebook.name


@pytest.mark.browser
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_widgets_render_and_respond(notebook, request):
    assert notebook.stem in SHOWS, MISSING.format(name=notebook.stem)
    shows = SHOWS[notebook.stem]
    lab, browser = request.getfixturevalue("lab"), request.getfixturevalue("browser")
    screenshots = request.getfixturevalue("screenshots")
    tiny_runs = request.getfixturevalue("tiny_runs")  # the first test starts the sweep
    extra = {"runs_dir": str(tiny_runs())} if shows.reuses else {}
    path = prepare(notebook, lab, **extra)
    context, page = page_for(browser, lab, path)
    try:
        wait_kernel_idle(page, PAGE_TIMEOUT_MS)
        prompts = run_all(page, RUN_ALL_S)
        assert error_texts(page) == []
        assert all(re.fullmatch(r"\[\d+\]:", p) for p in prompts), f"not every cell ran: {prompts}"
        if shows.reuses:
            reused = f"0 runs made, {shows.reuses} reused"
            outputs = page.locator(".jp-OutputArea").all_inner_texts()
            assert any(reused in text for text in outputs), f"expected {reused!r}: {outputs}"

        drawn = lambda plots: all(p["traces"] and p["points"] and p["svg"] for p in plots)
        plots = wait_until(  # a live figure's traces reach the page after the cell ends
            lambda: page.locator(".js-plotly-plot").evaluate_all(PLOT_DRAWN), drawn, 30,
            "every plotly figure to draw its traces",
        )
        images = wait_until(
            lambda: page.locator("img.widget-image").evaluate_all(IMAGE_PIXELS),
            lambda px: None not in px, 30, "every image widget to load",
        )
        seen = dict(
            sliders=page.locator(".widget-slider").count(),
            buttons={t.strip() for t in page.locator("button.jupyter-button").all_inner_texts()},
            plots=len(plots), images=sum(map(bool, images)),
            audio=page.locator("audio.jupyter-widgets").count(),
        )
        print(notebook.stem, seen)
        assert seen["sliders"] >= shows.sliders, seen
        assert set(shows.buttons) <= seen["buttons"], seen
        assert seen["plots"] >= shows.plots, seen
        assert drawn(plots), plots
        assert seen["images"] >= shows.images, seen
        assert seen["audio"] >= shows.audio, seen

        found = control(page, shows.drive)
        cell = page.locator(".jp-CodeCell").filter(has=found)
        before = watched(cell, shows.drive.watch)
        if shows.drive.watch == "image":
            assert before and all(before), "the driven cell shows no image"
        act(page, found, shows.drive)
        after = wait_until(
            lambda: watched(cell, shows.drive.watch),
            lambda now: now and all(now) and now != before, CHANGE_S,
            f"{shows.drive} to change its cell's {shows.drive.watch}",
        )
        assert after != before and after
        page.screenshot(path=screenshots / f"{notebook.stem}.png")
        assert error_texts(page) == []
    finally:
        context.close()
        lab.shutdown_kernel_of(path)


@pytest.mark.browser
def test_the_stop_button_ends_training_while_its_cell_runs(lab, browser, screenshots):
    """Run All on the VAE notebook set to a million steps: a click on the monitor's Stop
    button, while the training cell runs, ends training after that step; the notebook then
    runs to its end and records how far training got."""
    path = prepare(next(p for p in NOTEBOOKS if p.stem == "vae"), lab, steps=1_000_000)
    context, page = page_for(browser, lab, path)
    clicked = []

    def click_stop_once_training_runs(page) -> bool:
        stop = page.locator("button.jupyter-button", has_text=re.compile(r"^\s*Stop\s*$"))
        status = page.locator(".widget-html", has_text="steps/s").all_inner_texts()
        if stop.count() != 1 or not stop.is_enabled() or not any("step " in t for t in status):
            return False
        stop.click()
        clicked.append(status)
        return True

    try:
        wait_kernel_idle(page, PAGE_TIMEOUT_MS)
        prompts = run_all(page, RUN_ALL_S, during=click_stop_once_training_runs)
        assert clicked, "training ended before the Stop button could be clicked"
        assert all(re.fullmatch(r"\[\d+\]:", p) for p in prompts), f"not every cell ran: {prompts}"
        assert error_texts(page) == []
        buttons = {t.strip() for t in page.locator("button.jupyter-button").all_inner_texts()}
        assert "Stopped" in buttons and "Stop" not in buttons, buttons
        metrics = json.loads((lab.folder / "out" / "vae" / "metrics.json").read_text())
        assert 0 < metrics["steps"] < 1_000_000, metrics["steps"]
        page.screenshot(path=screenshots / "vae-stopped.png")
    finally:
        context.close()
        lab.shutdown_kernel_of(path)


# --- a run folder's executed notebook, opened without running it ----------------------------


@pytest.mark.browser
def test_executed_run_shows_static_training_curves(lab, browser, screenshots, tiny_runs):
    (executed,) = (tiny_runs() / "vae").glob("*/vae.ipynb")
    stored = nbformat.read(executed, as_version=4)
    assert "widgets" not in stored.metadata  # only static figures are left to show the curves
    path = executed.relative_to(lab.root).as_posix()
    context, page = page_for(browser, lab, path)
    try:
        page.wait_for_selector(".js-plotly-plot .main-svg", state="attached")
        plots = wait_until(
            lambda: page.locator(".js-plotly-plot").evaluate_all(PLOT_DRAWN),
            lambda p: p and all(x["traces"] and x["points"] and x["svg"] for x in p),
            30, "the static figures to be drawn",
        )
        curves = page.locator(".js-plotly-plot").first.evaluate(
            "el => el._fullData.filter(t => t.type === 'scatter' && t.x.length).length")
        assert curves >= 2, f"the training-curve figure draws {curves} curves"
        assert len(plots) >= 1
        prompts = page.evaluate(
            "() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
            ".map(e => e.textContent.trim())")
        assert not any("*" in p for p in prompts), "nothing may run"
        page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
        page.screenshot(path=screenshots / "vae-executed-run.png")
        assert error_texts(page) == []
    finally:
        context.close()
        lab.shutdown_kernel_of(path)
