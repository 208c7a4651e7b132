"""Debian's headless Chromium driven by Playwright, and JupyterLab as a person uses it.

* Chromium is Debian's (``/usr/bin/chromium``), launched by Playwright with ``executable_path``;
  Playwright's own browser download (``playwright install``) is never used, and nothing here
  installs anything: `find_chromium` says how to install what is missing.
* In the browser no host name but the loopback resolves and everything else goes to a dead
  proxy port on 127.0.0.1; what the page tried to reach off the loopback is listed in failure
  messages.
* `LabPage` opens notebooks, runs all cells from the menu and waits (bounded) for the kernel;
  a failing `step` saves a screenshot and reports the console errors and the server's log.
* `find_widget` finds ipywidgets controls by the text of their description label.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from .server import LabServer

CHROMIUM = os.environ.get("PREFIXLAB_CHROMIUM", "/usr/bin/chromium")
# Debian's /usr/bin/chromium is a shell wrapper that adds Google API keys and remote-extension
# flags (/etc/chromium.d); Playwright launches the binary behind it when it is there.
CHROMIUM_BINARY = "/usr/lib/chromium/chromium"
# Flags that keep Chromium off the network and free of first-run work. Playwright adds
# --headless itself (headless=True) and creates a fresh temporary user-data dir per launch.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--metrics-recording-only",
    "--no-pings",
    # Even so, Chromium 156 still tries a few Google endpoints in the background (component
    # updater, network time, account check). Two locks keep every packet on the loopback: no
    # host name but the loopback resolves, and anything not on the loopback (an IP address
    # included) goes to a proxy port on 127.0.0.1 where nothing listens.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>;127.0.0.1;localhost",
]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}

# Bounded waits, in seconds (the slow ones can be raised from the environment).
RUN_ALL_TIMEOUT = float(os.environ.get("PREFIXLAB_BROWSER_RUN_TIMEOUT", "1200"))
UI_TIMEOUT = 60.0  # one UI element to appear, a menu to open, the page to load
INSTALL_CHROMIUM = "apt-get update && apt-get install -y chromium"


class BrowserUnavailable(RuntimeError):
    """The headless browser cannot be had here; the message says how to install it."""


def find_chromium() -> str:
    """The path of Debian's Chromium, and the Playwright package to drive it.

    Raises:
        BrowserUnavailable: either is missing; the message gives the command that installs it.
    """
    if importlib.util.find_spec("playwright") is None:
        raise BrowserUnavailable(
            'the Python package playwright is missing: `pip install -e ".[test]"` '
            "(or `pip install playwright`; never `playwright install`, the tests use Debian's "
            "Chromium)"
        )
    if not os.access(CHROMIUM, os.X_OK):
        raise BrowserUnavailable(
            f"{CHROMIUM} is missing: install Debian's Chromium as root with "
            f"`{INSTALL_CHROMIUM}` (or point PREFIXLAB_CHROMIUM at a Chromium binary)"
        )
    return CHROMIUM


@contextlib.contextmanager
def chromium_browser(chromium: str = CHROMIUM) -> Iterator:
    """Playwright's Chromium driver on Debian's Chromium binary (never a downloaded one)."""
    from playwright.sync_api import sync_playwright

    if chromium == "/usr/bin/chromium" and os.access(CHROMIUM_BINARY, os.X_OK):
        chromium = CHROMIUM_BINARY

    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            timeout=UI_TIMEOUT * 1000,
        )
        try:
            yield browser
        finally:
            browser.close()


class LabPage:
    """One browser page on the lab, recording console errors and blocked requests."""

    def __init__(self, browser, server: LabServer, shots: Path, width=1400, height=1000):
        self.server = server
        self.shots = Path(shots)
        self.shots.mkdir(parents=True, exist_ok=True)
        self.console: list[str] = []
        self.blocked: list[str] = []
        self.context = browser.new_context(
            viewport={"width": width, "height": height}, device_scale_factor=1
        )
        self.context.set_default_timeout(UI_TIMEOUT * 1000)
        self.page = self.context.new_page()
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda err: self.console.append(f"pageerror: {err}"))
        # Chromium itself keeps off the network (flags above); record what the page tried.
        # (No context.route(): with the sync API a route handler only runs while the test is
        # inside a Playwright call, so requests would stall during any other wait.)
        self.page.on("request", self._on_request)

    def _on_request(self, request) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(request.url)
        if parts.scheme not in ("data", "blob", "about") and (
            (parts.hostname or "") not in LOOPBACK_HOSTS
        ):
            self.blocked.append(request.url)

    def wait(self, seconds: float) -> None:
        """Sleep while Playwright keeps delivering the page's events."""
        self.page.wait_for_timeout(seconds * 1000)

    def _on_console(self, msg) -> None:
        if msg.type in ("error", "assert"):
            where = msg.location.get("url", "") if msg.location else ""
            self.console.append(
                f"console.{msg.type}: {msg.text}" + (f" ({where})" if where else "")
            )

    def report(self) -> str:
        parts = []
        if self.console:
            parts.append("browser console errors:\n  " + "\n  ".join(self.console[-30:]))
        else:
            parts.append("browser console errors: none")
        if self.blocked:
            parts.append(
                "non-loopback requests (refused by the browser):\n  "
                + "\n  ".join(self.blocked[:20])
            )
        tail = self.server.log_tail(25)
        if tail:
            parts.append("JupyterLab log (tail):\n" + tail)
        return "\n".join(parts)

    def screenshot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), timeout=UI_TIMEOUT * 1000)
        return path

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        """Run one step; on any failure, save a screenshot and fail with what the page said."""
        try:
            yield
        except Exception as err:
            shot = ""
            with contextlib.suppress(Exception):
                name = "failure-" + re.sub(r"\W+", "-", what).strip("-")
                shot = f"\nscreenshot: {self.screenshot(name)}"
            logged = self.log_console_text()
            if logged:
                shot += (
                    "\nJupyterLab log console (errors in widget callbacks land here):\n" + logged
                )
            raise AssertionError(f"{what}: {err}{shot}\n{self.report()}") from err

    def log_console_text(self, limit: int = 3000) -> str:
        """What JupyterLab's log console holds (best effort, bounded): output of kernel messages
        no cell owns, such as a traceback raised in a widget's observer."""
        try:
            self.menu("View", "Show Log Console")
            panel = self.page.locator(".jp-LogConsolePanel")
            panel.first.wait_for(state="visible", timeout=5000)
            self.wait(1.0)
            text = panel.first.inner_text(timeout=5000).strip()
            return "" if "No log messages" in text else text[-limit:]
        except Exception:
            return ""

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.context.close()

    # -- JupyterLab ---------------------------------------------------------------------------

    def open_notebook(self, rel_path: str) -> None:
        """Open a notebook in a fresh workspace and wait until its kernel is idle."""
        self.page.goto(
            self.server.url(f"lab/tree/{rel_path}", reset="", token=self.server.token),
            wait_until="domcontentloaded",
            timeout=UI_TIMEOUT * 1000,
        )
        name = Path(rel_path).name
        self.page.locator(".jp-NotebookPanel").first.wait_for(state="visible")
        self.page.locator(".lm-TabBar-tabLabel", has_text=name).first.wait_for()
        self._accept_kernel_dialog()
        # The toolbar's indicator reads "idle" before any kernel exists: first wait for the
        # server to have a session with a kernel for this notebook.
        deadline = time.monotonic() + UI_TIMEOUT * 2
        while not self._session_kernel(rel_path):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no kernel was started for {rel_path}")
            self.wait(0.5)
        self.page.locator(
            ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator"
            '[data-status="idle"]'
        ).first.wait_for(state="attached")
        self.wait_for_kernel_idle(UI_TIMEOUT * 2, what="the kernel to start")

    def _session_kernel(self, rel_path: str) -> str | None:
        with contextlib.suppress(Exception):
            for session in self.server.api("sessions"):
                kernel = session.get("kernel") or {}
                if session.get("path", "").endswith(rel_path) and kernel.get("id"):
                    return kernel["id"]
        return None

    def _accept_kernel_dialog(self) -> None:
        dialog = self.page.locator(".jp-Dialog")
        with contextlib.suppress(Exception):
            dialog.wait_for(state="visible", timeout=1500)
            if "kernel" in dialog.inner_text().lower():
                dialog.locator(".jp-mod-accept").click()

    def notebook_state(self) -> dict:
        """Kernel status (the toolbar's indicator) and the prompts of the code cells."""
        return self.page.evaluate(
            r"""() => {
              const panel = [...document.querySelectorAll('.jp-NotebookPanel')]
                  .find(p => !p.classList.contains('lm-mod-hidden')) || null;
              if (!panel) return {status: 'no notebook', prompts: []};
              const ind = panel.querySelector('.jp-Notebook-ExecutionIndicator');
              const status = ind ? (ind.getAttribute('data-status') || '') : '';
              const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
                  .map(p => p.textContent.trim());
              const errors = [...panel.querySelectorAll(
                    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
                  .map(e => e.textContent)
                  .filter(t => /Traceback \(most recent call last\)|^\w*(Error|Exception): /m.test(t))
                  .map(t => t.slice(-1500));
              return {status, prompts, errors};
            }"""
        )

    def wait_for_kernel_idle(
        self, timeout: float, *, what: str = "the kernel", settle: float = 1.5, all_run=False
    ) -> dict:
        """Wait until the kernel indicator says idle, no cell is queued ("[*]") and the server
        agrees, steadily for `settle` seconds."""
        deadline = time.monotonic() + timeout
        calm_since = None
        state: dict = {}
        while time.monotonic() < deadline:
            state = self.notebook_state()
            if state.get("errors"):
                raise AssertionError("a cell failed:\n" + state["errors"][0])
            queued = any("*" in p for p in state["prompts"])
            idle = state["status"] == "idle" and not queued
            if idle:
                with contextlib.suppress(Exception):
                    idle = all(s == "idle" for s in self.server.kernel_states())
            if idle:
                calm_since = calm_since or time.monotonic()
                if time.monotonic() - calm_since >= settle:
                    if all_run:
                        not_run = [
                            i for i, p in enumerate(state["prompts"]) if not re.search(r"\d", p)
                        ]
                        if not_run:
                            raise AssertionError(
                                f"code cells {not_run} did not run (prompts {state['prompts']})"
                            )
                    return state
            else:
                calm_since = None
            self.wait(0.25)
        raise TimeoutError(f"waited {timeout:.0f} s for {what} to go idle; last state {state}")

    def menu(self, top: str, item: str) -> None:
        """Click `top` in the menu bar, then `item` in the menu it opens."""
        page = self.page
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(rf"^{re.escape(top)}$")).click(
            timeout=15_000
        )
        entry = page.locator(".lm-Menu-item:not(.lm-mod-disabled)").filter(
            has=page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(item)}$"))
        )
        entry.first.click(timeout=15_000)

    def _focus_notebook(self) -> None:
        # Command mode on the notebook (a click on its left margin, not into an editor).
        self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first.click(
            position={"x": 5, "y": 5}
        )

    def run_all_cells(self, timeout: float = RUN_ALL_TIMEOUT) -> dict:
        """Edit > Clear Outputs of All Cells (a committed notebook carries [n] prompts), then
        Run > Run All Cells, and wait until every code cell has run and the kernel is idle."""
        page = self.page
        self._focus_notebook()
        self.menu("Edit", "Clear Outputs of All Cells")
        page.wait_for_function(
            """() => [...document.querySelectorAll(
                    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt')]
                  .every(p => !/\\d|\\*/.test(p.textContent))""",
            timeout=UI_TIMEOUT * 1000,
        )
        self._focus_notebook()
        self.menu("Run", "Run All Cells")
        # The prompts turn into [*] (queued or running) or [n] at once.
        page.wait_for_function(
            """() => [...document.querySelectorAll(
                        '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt')]
                    .some(p => /\\*|\\d/.test(p.textContent))""",
            timeout=UI_TIMEOUT * 1000,
        )
        return self.wait_for_kernel_idle(timeout, what="Run All Cells", all_run=True)

    def tidy_for_screenshot(self, collapse_code: bool = True) -> None:
        """What a person does to look at a lab: hide the file browser (and the code)."""
        self._focus_notebook()
        # A click on the current tab of the left side bar folds the file browser away.
        current = self.page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
        if current.count():
            current.first.click()
        if collapse_code:
            self._focus_notebook()
            self.menu("View", "Collapse All Code")
        self.page.mouse.move(0, 0)
        self.page.wait_for_timeout(500)


# --------------------------------------------------------------------------------------------
# Widgets, found by their description label
# --------------------------------------------------------------------------------------------


def _label_regex(description: str) -> re.Pattern:
    return re.compile(rf"^\s*{re.escape(description)}\s*:?\s*$", re.IGNORECASE)


def find_widget(page, kind: str, description: str):
    """The widget of `kind` ('slider', 'dropdown', 'checkbox', 'toggle') whose description
    label reads `description` (case-insensitive; a trailing colon is allowed)."""
    label = _label_regex(description)
    if kind == "slider":
        loc = page.locator(".widget-slider").filter(
            has=page.locator(".widget-label", has_text=label)
        )
    elif kind == "dropdown":
        loc = page.locator(".widget-dropdown").filter(
            has=page.locator(".widget-label", has_text=label)
        )
    elif kind == "checkbox":
        # ipywidgets 8: <div class="widget-checkbox"> ... <label class="widget-label-basic">
        # <input type=checkbox><span>MLP</span></label>; a ToggleButton is a
        # <button class="widget-toggle-button"> with the description as its text.
        loc = (
            page.locator(".widget-checkbox")
            .filter(has=page.locator(".widget-label-basic span, .widget-label", has_text=label))
            .or_(page.locator("button.widget-toggle-button").filter(has_text=label))
        )
    else:
        raise ValueError(kind)
    return loc


def checkbox_state(widget) -> bool:
    return widget.evaluate(
        """el => {
          const box = el.querySelector('input[type=checkbox]');
          if (box) return box.checked;
          return el.classList.contains('mod-active');
        }"""
    )


def slider_value(widget) -> str:
    return widget.locator(".widget-readout").inner_text().strip()
