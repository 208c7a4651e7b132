"""End-to-end harness: a real JupyterLab driven by Debian's headless Chromium through Playwright.

Used by ``tests/test_browser.py`` (marker ``browser``) and ``scripts/screenshot_lab.py``.
Everything here stays on the loopback interface:

* Chromium is Debian's (``/usr/bin/chromium``), launched by Playwright with ``executable_path``;
  Playwright's own browser download (``playwright install``) is never used. In the browser no
  host name but the loopback resolves and everything else goes to a dead proxy port on
  127.0.0.1; what the page tried to reach off the loopback is listed in failure messages.
* JupyterLab listens on 127.0.0.1, a free port and a random token, with fresh config, data,
  runtime, settings and workspace folders; news and update checks are off; the kernel gets the
  FAST training preset and the offline switches. It always stops (process group plus every
  process it started, kernels included).
* Every wait is bounded.

The lab-specific checks (``PrefixLabCheck``, ``HeatmapCheck``) find widgets by the text of
their description labels, so they work on any notebook that follows the contract in
``PREFIX_LAB_CONTRACT`` below.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
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
INSTALL_TIMEOUT = 900
SERVER_START_TIMEOUT = float(os.environ.get("PREFIXLAB_BROWSER_START_TIMEOUT", "180"))
RUN_ALL_TIMEOUT = float(os.environ.get("PREFIXLAB_BROWSER_RUN_TIMEOUT", "1200"))
RETRAIN_TIMEOUT = float(os.environ.get("PREFIXLAB_BROWSER_RETRAIN_TIMEOUT", "600"))
UI_TIMEOUT = 60.0  # one UI element to appear, a menu to open, the page to load
STALE_SECONDS = 15.0  # the kernel idle and the lab unchanged that long: it is not coming

PREFIX_LAB_CONTRACT = """\
What the prefix-length lab notebook must show (found by label text, case-insensitive):
  * an IntSlider described "prefix length" (its readout is the current prefix length);
  * a Dropdown described "method" whose selected label contains "prefix" or "prompt";
  * a Checkbox (or ToggleButton) described "MLP";
  * in the outputs of the slider's cell (or a later cell): "trainable parameters: 1,234" with
    the count prefixlab.accounting.parameter_counts gives for the model, the prefix length,
    the method and the MLP switch (mlp_hidden of the FAST preset), and "context: ..." naming
    the prefix length and the positions left for tokens (context_budget);
  * a loss plot and a context-budget figure, each in an Output widget under a caption that
    names it ("loss ...", "context ...") and the prefix length ("P=11" or "prefix length 11");
    every figure caption that names a prefix length names the current one;
  * a status line starting "training…" while a run is going; "failed"/"stopped" on errors;
  * the retraining runs in the kernel when a control changes.
"""


# --------------------------------------------------------------------------------------------
# Installing what the harness needs
# --------------------------------------------------------------------------------------------


class BrowserUnavailable(RuntimeError):
    """The headless browser (or the lab) cannot be had here; the message says why and how."""


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> None:
    try:
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired as err:
        raise BrowserUnavailable(f"`{' '.join(cmd)}` did not finish in {timeout:.0f} s") from err
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-25:])
        raise BrowserUnavailable(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{tail}")


def ensure_chromium() -> str:
    """Debian's Chromium, installed with apt-get when missing (as root only)."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    how = "install it with `apt-get update && apt-get install -y chromium`"
    if os.name != "posix" or os.geteuid() != 0:
        raise BrowserUnavailable(f"{CHROMIUM} is missing and this is not root: {how}.")
    if not shutil.which("apt-get"):
        raise BrowserUnavailable(f"{CHROMIUM} is missing and there is no apt-get: {how}.")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-q"], timeout=INSTALL_TIMEOUT / 3, env=env)
    _run(["apt-get", "install", "-y", "-q", "chromium"], timeout=INSTALL_TIMEOUT, env=env)
    if not os.access(CHROMIUM, os.X_OK):
        raise BrowserUnavailable(f"apt-get installed chromium but {CHROMIUM} is not there.")
    return CHROMIUM


def _pip_install(*requirements: str) -> None:
    env = {
        **os.environ,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_PROGRESS_BAR": "off",
        # The Python package never downloads a browser by itself; make sure of it.
        "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
    }
    _run([sys.executable, "-m", "pip", "install", "-q", *requirements], INSTALL_TIMEOUT, env)
    importlib.invalidate_caches()


def ensure_python_packages() -> None:
    """Playwright (the Python package only), JupyterLab and the widget/plotly front ends."""
    wanted = {
        "playwright": "playwright>=1.49",
        "jupyterlab": "jupyterlab>=4.0",
        "ipykernel": "ipykernel>=6.0",
        "ipywidgets": "ipywidgets>=8.0",
        "jupyterlab_widgets": "jupyterlab_widgets>=3.0",
        "plotly": "plotly>=5.18",
        "psutil": "psutil",
    }
    missing = []
    for module, requirement in wanted.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(requirement)
    if missing:
        _pip_install(*missing)
        for module in wanted:
            importlib.import_module(module)


def check_labextensions() -> None:
    """The widget manager and plotly's mimetype renderer must be enabled in JupyterLab."""
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    listing = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    for name in ("@jupyter-widgets/jupyterlab-manager", "jupyterlab-plotly"):
        line = next((ln for ln in listing.splitlines() if name in ln.split()), "")
        if "enabled" not in line or "OK" not in line:
            raise AssertionError(
                f"JupyterLab extension {name} is not installed and enabled "
                f"(`jupyter labextension list`):\n{listing}"
            )


# --------------------------------------------------------------------------------------------
# JupyterLab as a subprocess
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# User settings for the lab: no news or update checks, no autosave (the notebooks under test are
# copies anyway), every cell kept in the DOM so that prompts and outputs can be read.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",
        "kernelShutdown": True,
    },
    "@jupyterlab/apputils-extension/themes.jupyterlab-settings": {
        "theme": "JupyterLab Light",
        "adaptive-theme": False,
    },
}


class LabServer:
    """JupyterLab on 127.0.0.1 with a random token; use as a context manager (always stops)."""

    def __init__(self, root_dir: Path, extra_env: dict[str, str] | None = None):
        self.root_dir = Path(root_dir)
        self.extra_env = extra_env or {}
        self.port = 0
        self.token = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen | None = None
        self.home = Path(tempfile.mkdtemp(prefix="prefixlab-lab-"))
        self.log_path = self.home / "jupyterlab.log"
        self._log = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str, **query: str) -> str:
        params = "&".join(f"{k}={v}" if v != "" else k for k, v in query.items())
        return f"{self.base_url}/{path.lstrip('/')}" + (f"?{params}" if params else "")

    def api(self, path: str, method: str = "GET", timeout: float = 10.0):
        request = urllib.request.Request(
            self.url(f"api/{path.lstrip('/')}"),
            method=method,
            headers={"Authorization": f"token {self.token}"},
            data=b"" if method == "POST" else None,
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def environment(self) -> dict[str, str]:
        dirs = {
            "JUPYTER_CONFIG_DIR": "config",
            "JUPYTER_DATA_DIR": "data",
            "JUPYTER_RUNTIME_DIR": "runtime",
            "JUPYTERLAB_SETTINGS_DIR": "settings",
            "JUPYTERLAB_WORKSPACES_DIR": "workspaces",
            "IPYTHONDIR": "ipython",
            "MPLCONFIGDIR": "mpl",
            "PREFIXLAB_CACHE": "cache",
        }
        env = dict(os.environ)
        for name, sub in dirs.items():
            (self.home / sub).mkdir(parents=True, exist_ok=True)
            env[name] = str(self.home / sub)
        env.update(
            {
                # The kernel inherits all of this: FAST preset, offline, inline figures.
                "PREFIXLAB_PRESET": "fast",
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1",
                "PIP_NO_INDEX": "1",
                "MPLBACKEND": "module://matplotlib_inline.backend_inline",
                "PYTHONHASHSEED": "0",
                "TQDM_DISABLE": "1",
                "PYTHONUNBUFFERED": "1",
                "PATH": os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
            }
        )
        env.pop("JUPYTER_PATH", None)
        env.pop("JUPYTER_TOKEN", None)
        env.update(self.extra_env)
        return env

    def start(self) -> LabServer:
        settings = self.home / "settings"
        for rel, values in LAB_SETTINGS.items():
            path = settings / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values, indent=2))
        self.port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            "--ServerApp.open_browser=False",
            "--ServerApp.terminals_enabled=False",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
        ]
        if os.name == "posix" and os.geteuid() == 0:
            cmd.append("--ServerApp.allow_root=True")  # CI and these machines run as root
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.root_dir,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as a whole in stop()
        )
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"JupyterLab exited ({self.proc.returncode}) while starting:\n"
                    + self.log_tail()
                )
            try:
                self.api("status", timeout=3)
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.5)
        raise RuntimeError(
            f"JupyterLab did not answer /api/status within {SERVER_START_TIMEOUT:.0f} s:\n"
            + self.log_tail()
        )

    def shutdown_kernels(self) -> None:
        """End every kernel the lab started (between tests; stop() ends the rest)."""
        with contextlib.suppress(Exception):
            for kernel in self.api("kernels"):
                with contextlib.suppress(Exception):
                    self.api(f"kernels/{kernel['id']}", method="DELETE", timeout=15)

    def kernel_states(self) -> list[str]:
        return [k.get("execution_state", "?") for k in self.api("kernels")]

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            import psutil

            family = psutil.Process(proc.pid).children(recursive=True)
        except Exception:
            family = []
        # Politely first: the server shuts its kernels down.
        with contextlib.suppress(Exception):
            if proc.poll() is None:
                self.api("shutdown", method="POST", timeout=5)
                proc.wait(timeout=15)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # Kernels run in sessions of their own: end any that survived, by pid.
        for child in family:
            with contextlib.suppress(Exception):
                if child.is_running():
                    child.kill()
        if self._log:
            self._log.close()

    def cleanup(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> LabServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# The browser
# --------------------------------------------------------------------------------------------


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


def parse_count(text: str, label: str) -> int | None:
    """The integer after `label` ("trainable parameters: 12,345 ..."), separators dropped."""
    match = re.search(re.escape(label) + r"\s*([0-9][0-9,\u00a0\u202f' _]*)", text, re.I)
    if not match:
        return None
    return int(re.sub(r"\D", "", match.group(1)))


def numbers_in(text: str) -> set[int]:
    return {int(re.sub(r"\D", "", n)) for n in re.findall(r"\d[\d,\u00a0\u202f]*", text)}


# --------------------------------------------------------------------------------------------
# The two lab checks
# --------------------------------------------------------------------------------------------


def expected_trainable(config, method: str, prefix_length: int, mlp: bool, mlp_hidden: int):
    """What prefixlab.accounting says the lab should show."""
    from prefixlab.accounting import parameter_counts

    key = "prompt" if method == "prompt" else ("prefix+mlp" if mlp else "prefix")
    rows = parameter_counts(config, prefix_length, mlp_hidden=mlp_hidden)
    return next(r["trainable"] for r in rows if r["method"] == key)


def _solve_mlp_hidden(config, prefix_length: int, count: int) -> int | None:
    """The MLP width that makes prefix_mlp_parameters equal `count`, if there is one."""
    from prefixlab.loading import model_dims

    dims = model_dims(config)
    out = dims.n_layers * 2 * dims.kv_dim
    rest = count - prefix_length * dims.kv_dim - out
    per = dims.kv_dim + 1 + out
    return rest // per if rest > 0 and rest % per == 0 else None


@dataclass
class PrefixLabCheck:
    """The prefix-length lab: slider, method, MLP switch, parameter count, context, loss plot."""

    notebook: str  # path relative to the server's root
    config: Callable[[], object]  # the lab's model config (for prefixlab.accounting)
    mlp_hidden: int = 512
    slider: str = "prefix length"
    method: str = "method"
    mlp: str = "MLP"
    params_label: str = "trainable parameters:"
    context_label: str = "context:"
    # Figures that must follow the prefix length: name -> regex their caption matches.
    figures: dict = field(
        default_factory=lambda: {"loss plot": r"\bloss\b", "context-budget figure": r"\bcontext\b"}
    )
    # A status line that reads like this while a run is going / when it went wrong.
    busy_status: str = r"^\s*training(…|\.\.\.)"
    failed_status: str = r"^\s*(failed|stopped)\b"
    screenshot: str = "05_prefix_length_lab"

    # -- reading the lab -----------------------------------------------------------------

    def _scope(self, lab: LabPage):
        """The cell whose output shows the slider."""
        page = lab.page
        return page.locator(".jp-Cell").filter(has=find_widget(page, "slider", self.slider))

    # Reads, for the cell that shows the slider and each cell after it, the text a person reads
    # in its outputs (HTML widgets, printed text, markdown/HTML, plotly titles; not the labels
    # and readouts of the controls) and the figures in its Output widgets, each with the text
    # of that Output widget (and of an SVG image's <text>, if the figure is an SVG).
    _READ_JS = r"""([labelText]) => {
      const norm = t => (t || '').replace(/[\s\u00a0\u200b:]+/g, ' ').trim().toLowerCase();
      const panel = [...document.querySelectorAll('.jp-NotebookPanel')]
          .find(p => !p.classList.contains('lm-mod-hidden'));
      const cells = [...panel.querySelectorAll('.jp-Cell')];
      const start = cells.findIndex(c => [...c.querySelectorAll('.widget-slider .widget-label')]
          .some(l => norm(l.textContent) === labelText));
      if (start < 0) return [];
      const TEXT = '.widget-html-content, .widget-htmlmath-content, .jp-RenderedText, ' +
          '.jp-RenderedHTMLCommon, .jp-RenderedMarkdown, .js-plotly-plot .gtitle, ' +
          '.js-plotly-plot .g-xtitle, .js-plotly-plot .g-ytitle';
      const svgText = img => {
        if (!img.src.startsWith('data:image/svg+xml')) return '';
        try {
          const raw = img.src.includes(';base64,') ? atob(img.src.split(',')[1])
                                                 : decodeURIComponent(img.src.split(',')[1]);
          const doc = new DOMParser().parseFromString(raw, 'image/svg+xml');
          return [...doc.querySelectorAll('text')].map(t => t.textContent).join(' ');
        } catch (e) { return ''; }
      };
      return cells.slice(start).map(cell => {
        const area = cell.querySelector('.jp-Cell-outputArea');
        if (!area) return {text: '', figures: []};
        const text = [...area.querySelectorAll(TEXT)]
            .map(e => e.innerText || e.textContent).join('\n');
        const figures = [...area.querySelectorAll('.widget-output')].map(o => ({
            images: [...o.querySelectorAll('img')].map(i => i.src.length + ':' +
                     i.src.slice(-200)),
            plotly: [...o.querySelectorAll('.js-plotly-plot .main-svg')].map(
                     s => s.outerHTML.length + ':' + s.outerHTML.slice(-300)),
            text: [...o.querySelectorAll(TEXT)].map(e => e.textContent)
                   .concat([...o.querySelectorAll('img')].map(svgText)).join('\n'),
          })).filter(o => o.images.length || o.plotly.length);
        return {text, figures};
      });
    }"""

    def read(self, lab: LabPage) -> dict:
        """The lab's state as shown: controls, and what the slider's cell (or, for anything not
        there, the first later cell that shows it) says."""
        page = lab.page
        label = re.sub(r"[\s:]+", " ", self.slider).strip().lower()
        cells = page.evaluate(self._READ_JS, [label])
        count = context = None
        figures: list = []
        for cell in cells:
            if count is None:
                count = parse_count(cell["text"], self.params_label)
            if not context:
                context = self._context_text(cell["text"])
            if not figures:
                figures = cell["figures"]
        slider = find_widget(page, "slider", self.slider)
        method_widget = find_widget(page, "dropdown", self.method)
        method_label = ""
        if method_widget.count():
            method_label = method_widget.locator("select").evaluate(
                "s => s.options[s.selectedIndex] ? s.options[s.selectedIndex].text : ''"
            )
        method_label = method_label.replace("\u00a0", " ")
        mlp_widget = find_widget(page, "checkbox", self.mlp)
        return {
            "prefix_length": int(slider_value(slider)),
            "method": "prompt" if "prompt" in method_label.lower() else "prefix",
            "method_label": method_label,
            "mlp": checkbox_state(mlp_widget),
            "count": count,
            "context": context or "",
            "figures": figures,
            "busy": self._status(cells, self.busy_status),
            "failed": self._status(cells, self.failed_status),
        }

    @staticmethod
    def _status(cells: list[dict], pattern: str) -> str:
        """The first output line matching `pattern` ("" when none does)."""
        for cell in cells:
            for line in cell["text"].splitlines():
                if re.search(pattern, line, re.I):
                    return line.strip()
        return ""

    def _context_text(self, text: str) -> str:
        i = text.lower().find(self.context_label.lower())
        return text[i:].splitlines()[0] if i >= 0 else ""

    def problems(self, state: dict, config, previous: dict | None = None) -> list[str]:
        """What differs from what prefixlab.accounting says (empty when all is right)."""
        from prefixlab.accounting import context_budget

        p = state["prefix_length"]
        found = []
        want = expected_trainable(config, state["method"], p, state["mlp"], self.mlp_hidden)
        if state["count"] != want:
            hint = ""
            if state["mlp"] and state["method"] == "prefix" and state["count"]:
                hidden = _solve_mlp_hidden(config, p, state["count"])
                if hidden:
                    hint = f"; the count fits mlp_hidden={hidden} (PrefixLabCheck.mlp_hidden)"
            found.append(
                f"'{self.params_label}' shows {state['count']}, accounting says {want} "
                f"(prefix length {p}, method {state['method_label']!r}, MLP {state['mlp']}, "
                f"mlp_hidden {self.mlp_hidden}){hint}"
            )
        budget = context_budget(config, p)
        nums = numbers_in(state["context"])
        if not state["context"] or not {p, budget["left_for_tokens"]} <= nums:
            found.append(
                f"'{self.context_label}' text {state['context']!r} does not name prefix length "
                f"{p} and {budget['left_for_tokens']} positions left (of {budget['context']})"
            )
        # Figures: each sits in an Output widget with a caption (or a plotly title) that
        # names what it shows and the prefix length ("loss · ..., P=11", "context · P=11").
        any_p = re.compile(r"prefix[ _-]?length\D{0,12}(\d+)|\bP\s*=\s*(\d+)", re.I)
        figures = state["figures"]
        for name, keyword in self.figures.items():
            matching = [f for f in figures if re.search(keyword, f["text"], re.I)]
            if not matching:
                found.append(
                    f"no {name} (a figure in an Output widget whose caption matches "
                    f"{keyword!r}); figure captions: {[f['text'][:120] for f in figures]}"
                )
        for f in figures:
            shown = {int(a or b) for a, b in any_p.findall(f["text"])}
            if shown and shown != {p}:
                found.append(
                    f"a figure still shows prefix length {sorted(shown)}, not {p}: "
                    f"{f['text'][:160]!r}"
                )
            elif not shown and any(re.search(k, f["text"], re.I) for k in self.figures.values()):
                found.append(
                    f"figure caption {f['text'][:160]!r} does not name the prefix "
                    f"length (P={p} or 'prefix length {p}')"
                )
        if previous is not None and figures == previous["figures"]:
            found.append("the figures did not change")
        return found

    def wait_consistent(self, lab: LabPage, config, previous: dict | None, what: str) -> dict:
        """Wait (bounded) for the retraining to finish and the lab to show what the accounting
        says. Finished means: the kernel is idle and no status line reads "training…" (the
        kernel can report idle while a widget callback still runs: ipykernel 7 answers some
        comm messages during it). Fails at once on a "failed" status line, and early when
        nothing changes for STALE_SECONDS with neither the kernel nor the lab busy."""
        deadline = time.monotonic() + RETRAIN_TIMEOUT
        stale_since, last = time.monotonic(), None
        while True:
            lab.wait_for_kernel_idle(max(1.0, deadline - time.monotonic()), what=what)
            state = self.read(lab)
            if state["failed"]:
                raise AssertionError(f"after {what} the lab reports: {state['failed']}")
            issues = [] if state["busy"] else self.problems(state, config, previous)
            if not state["busy"] and not issues:
                return state
            if state != last or state["busy"]:
                stale_since, last = time.monotonic(), state
            now = time.monotonic()
            if now > deadline:
                why = "; ".join(issues) or f"still busy: {state['busy']!r}"
                raise AssertionError(f"after {what}, {RETRAIN_TIMEOUT:.0f} s: {why}")
            if now - stale_since > STALE_SECONDS:
                raise AssertionError(f"after {what}: " + "; ".join(issues))
            lab.wait(1.0)

    # -- the scenario ----------------------------------------------------------------------

    def run(self, lab: LabPage, *, move: str = "ArrowRight") -> dict:
        """Open, run all, move the slider with the keyboard, flip the MLP switch; returns a summary
        with timings. Raises AssertionError (with console errors) on anything missing."""
        page = lab.page
        t0 = time.monotonic()
        timings = {}
        config = self.config()
        with lab.step(f"open {self.notebook}"):
            lab.open_notebook(self.notebook)
        with lab.step(f"run all cells of {self.notebook}"):
            lab.run_all_cells()
        timings["run_all"] = time.monotonic() - t0
        with lab.step("find the lab's widgets"):
            for kind, desc in (
                ("slider", self.slider),
                ("dropdown", self.method),
                ("checkbox", self.mlp),
            ):
                widget = find_widget(page, kind, desc)
                widget.first.wait_for(state="visible", timeout=UI_TIMEOUT * 1000)
                if widget.count() != 1:
                    raise AssertionError(f"{widget.count()} {kind} widgets described {desc!r}")
            first = self.wait_consistent(lab, config, None, "Run All Cells")
        if first["method"] != "prefix":
            with lab.step("choose the prefix method"):
                select = find_widget(page, "dropdown", self.method).locator("select")
                select.select_option(
                    label=next(
                        o
                        for o in select.locator("option").all_inner_texts()
                        if "prefix" in o.lower()
                    )
                )
                first = self.wait_consistent(lab, config, first, "choosing prefix tuning")

        # Move the slider with the keyboard: focus its handle, one key press.
        with lab.step(f"move the '{self.slider}' slider with {move}"):
            slider = find_widget(page, "slider", self.slider)
            handle = slider.locator(".noUi-handle").first
            handle.scroll_into_view_if_needed()
            handle.focus()
            p0 = first["prefix_length"]
            handle.press(move)
            page.wait_for_function(
                """([el, before]) => el.textContent.trim() !== before""",
                arg=[slider.locator(".widget-readout").element_handle(), str(p0)],
                timeout=UI_TIMEOUT * 1000,
            )
            t1 = time.monotonic()
            moved = self.wait_consistent(lab, config, first, f"moving the slider ({move})")
            timings["retrain_after_slider"] = time.monotonic() - t1
            if moved["prefix_length"] == p0:
                raise AssertionError(f"the slider still reads {p0} after {move}")

        # Flip the MLP switch: the count changes exactly as the accounting says.
        with lab.step(f"toggle '{self.mlp}'"):
            switch = find_widget(page, "checkbox", self.mlp)
            clickable = switch.locator("input[type=checkbox]")
            (clickable if clickable.count() else switch).first.click()
            page.wait_for_function(
                """([el, before]) => {
                     const box = el.querySelector('input[type=checkbox]');
                     return (box ? box.checked : el.classList.contains('mod-active')) !== before;
                   }""",
                arg=[switch.element_handle(), moved["mlp"]],
                timeout=UI_TIMEOUT * 1000,
            )
            t2 = time.monotonic()
            toggled = self.wait_consistent(lab, config, None, f"toggling {self.mlp}")
            timings["retrain_after_mlp"] = time.monotonic() - t2
            delta = toggled["count"] - moved["count"]
            p = toggled["prefix_length"]
            want = expected_trainable(config, "prefix", p, toggled["mlp"], self.mlp_hidden) - (
                expected_trainable(config, "prefix", p, moved["mlp"], self.mlp_hidden)
            )
            if delta != want or delta == 0:
                raise AssertionError(f"MLP switch changed the count by {delta}, accounting: {want}")

        with lab.step("screenshot of the prefix-length lab"):
            lab.tidy_for_screenshot()
            self._scope(lab).first.locator(".jp-Cell-outputArea").evaluate(
                "e => e.scrollIntoView({block: 'start'})"
            )
            page.wait_for_timeout(300)
            shot = lab.screenshot(self.screenshot)
        timings["total"] = time.monotonic() - t0
        return {
            "before": {k: first[k] for k in ("prefix_length", "mlp", "count", "context")},
            "after_slider": {k: moved[k] for k in ("prefix_length", "mlp", "count", "context")},
            "after_mlp": {k: toggled[k] for k in ("prefix_length", "mlp", "count", "context")},
            "screenshot": str(shot),
            "timings": timings,
        }


HOVER_RE = re.compile(r"layer\s*(\S+)\s*head\s*(\S+)\s*mass\s*([0-9.eE+-]+)", re.I)


@dataclass
class HeatmapCheck:
    """The attention notebook: a plotly heatmap rendered, hover text with layer, head and mass."""

    notebook: str
    screenshot: str = "04_prefix_attention"

    def run(self, lab: LabPage) -> dict:
        page = lab.page
        t0 = time.monotonic()
        with lab.step(f"open {self.notebook}"):
            lab.open_notebook(self.notebook)
        with lab.step(f"run all cells of {self.notebook}"):
            lab.run_all_cells()
        with lab.step("hide the file browser"):
            lab.tidy_for_screenshot(collapse_code=False)
        with lab.step("find the plotly heatmap"):
            plot = page.locator(".js-plotly-plot").filter(has=page.locator(".hm, .heatmaplayer"))
            plot.first.wait_for(state="visible", timeout=UI_TIMEOUT * 1000)
            plot = plot.first
            if plot.locator("svg.main-svg").count() == 0:
                raise AssertionError("the plotly figure has no SVG")
            plot.scroll_into_view_if_needed()
        with lab.step("hover over the heatmap"):
            drag = plot.locator(".nsewdrag").first
            box = drag.bounding_box()
            if not box:
                raise AssertionError("the heatmap's drag layer has no size")
            hover = ""
            for fx, fy in ((0.5, 0.5), (0.25, 0.25), (0.75, 0.75), (0.1, 0.9)):
                page.mouse.move(
                    box["x"] + box["width"] * fx, box["y"] + box["height"] * fy, steps=4
                )
                with contextlib.suppress(Exception):
                    plot.locator(".hoverlayer .hovertext").first.wait_for(timeout=3000)
                    lab.wait(0.5)  # the label follows the last mouse position
                    hover = plot.locator(".hoverlayer .hovertext").first.evaluate(
                        """g => [...g.querySelectorAll('text.nums tspan.line')]
                                 .map(t => t.textContent).join('\\n')
                                 || g.textContent"""
                    )
                    if HOVER_RE.search(hover):
                        break
            match = HOVER_RE.search(hover)
            if not match:
                raise AssertionError(f"hover text {hover!r} does not carry layer, head and mass")
            shot = lab.screenshot(self.screenshot)
        return {
            "hover": hover,
            "layer": match.group(1),
            "head": match.group(2),
            "mass": float(match.group(3)),
            "screenshot": str(shot),
            "seconds": time.monotonic() - t0,
        }


# --------------------------------------------------------------------------------------------
# Stand-in notebooks (a fast self-test of the harness, and the spec of what it relies on)
# --------------------------------------------------------------------------------------------

STANDIN_CONFIG = {
    "n_layer": 2,
    "n_embd": 64,
    "n_head": 4,
    "n_positions": 128,
    "vocab_size": 97,
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def standin_config():
    from transformers import GPT2Config

    return GPT2Config(**STANDIN_CONFIG)


def _notebook(cells: list[tuple[str, str]]) -> dict:
    return {
        "cells": [
            {"cell_type": kind, "metadata": {}, "source": src, "id": f"cell-{i}"}
            | ({"execution_count": None, "outputs": []} if kind == "code" else {})
            for i, (kind, src) in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {
                "name": "python3",
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
            },
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


STANDIN_05 = [
    ("markdown", "# Stand-in: prefix-length lab\nA fast copy of the real lab's widget contract."),
    (
        "code",
        f"""import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import HTML, display
from transformers import GPT2Config

from prefixlab.accounting import context_budget, parameter_counts

CONFIG = GPT2Config(**{STANDIN_CONFIG!r})
MLP_HIDDEN = 512""",
    ),
    (
        "code",
        """style = {"description_width": "110px"}
prefix_length = widgets.IntSlider(value=10, min=1, max=64, description="prefix length",
                                  continuous_update=False, style=style)
method = widgets.Dropdown(options=[("prefix tuning", "prefix"), ("prompt tuning", "prompt")],
                          value="prefix", description="method", style=style)
mlp = widgets.Checkbox(value=False, description="MLP", indent=False)
steps = widgets.IntSlider(value=30, min=10, max=200, step=10, description="steps",
                          continuous_update=False, style=style)
info = widgets.HTML()
status = widgets.HTML()
loss_out = widgets.Output()
budget_out = widgets.Output()


def trainable(P, m, use_mlp):
    key = "prompt" if m == "prompt" else ("prefix+mlp" if use_mlp else "prefix")
    rows = parameter_counts(CONFIG, P, mlp_hidden=MLP_HIDDEN)
    return next(r["trainable"] for r in rows if r["method"] == key)


def draw(out, caption, fig):
    out.clear_output(wait=True)
    with out:
        display(HTML(f"<div>{caption}</div>"))
        display(fig)
    plt.close(fig)


def retrain(_=None):
    P = prefix_length.value
    mlp.disabled = method.value != "prefix"
    budget = context_budget(CONFIG, P)
    info.value = (
        f"trainable parameters: {trainable(P, method.value, mlp.value):,}<br>"
        f"context: P={P} uses {P} of {budget['context']} positions "
        f"({budget['percent_used']:.1f}%), {budget['left_for_tokens']} left for tokens"
    )
    status.value = f"<b>training…</b> P={P}"
    time.sleep(1.0)  # stands in for a FAST-preset training run
    rng = np.random.default_rng(P + 100 * mlp.value)
    loss = 3.0 * np.exp(-np.arange(steps.value) / (5 + P)) + 0.1 * rng.random(steps.value)
    label = method.value + (" + MLP" if mlp.value and method.value == "prefix" else "")
    caption = f"{label}, P={P}, {steps.value} steps"
    fig, ax = plt.subplots(figsize=(5.5, 2.8))
    ax.plot(loss, label=label)
    ax.set(title=f"Training loss, {caption}", xlabel="step", ylabel="loss")
    ax.legend()
    draw(loss_out, f"loss · {caption}", fig)
    fig, ax = plt.subplots(figsize=(5.5, 1.2))
    ax.barh(0, P, color="tab:orange")
    ax.barh(0, budget["left_for_tokens"], left=P, color="#e6e6e6")
    ax.set(title=f"Context budget, P={P}", yticks=[], xlim=(0, budget["context"]))
    draw(budget_out, f"context · P={P}", fig)
    status.value = f"<b>done</b> · final loss {loss[-1]:.3f}"


for w in (prefix_length, method, mlp, steps):
    w.observe(retrain, names="value")
retrain()
display(widgets.VBox([widgets.VBox([prefix_length, method, mlp, steps, info, status]),
                      widgets.HBox([loss_out, budget_out])]))""",
    ),
]

STANDIN_04 = [
    ("markdown", "# Stand-in: prefix attention\nA plotly heatmap of attention mass."),
    (
        "code",
        """import numpy as np
import plotly.graph_objects as go

rng = np.random.default_rng(0)
mass = rng.dirichlet(np.ones(4), size=4)  # layers x heads
fig = go.Figure(go.Heatmap(z=mass, x=list(range(4)), y=list(range(4)), colorscale="Viridis",
                           hovertemplate="layer %{y}<br>head %{x}<br>mass %{z:.3f}<extra></extra>"))
fig.update_layout(title="attention mass on the prefix", xaxis_title="head",
                  yaxis_title="layer", width=620, height=460)
fig.show(renderer="plotly_mimetype")""",
    ),
]


def write_standins(folder: Path) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, cells in (("05_prefix_length_lab", STANDIN_05), ("04_prefix_attention", STANDIN_04)):
        path = folder / f"{name}.ipynb"
        path.write_text(json.dumps(_notebook(cells), indent=1))
        paths[name] = path
    return paths


def copy_notebooks(dest: Path) -> Path:
    """A copy of the repository's notebooks/ (the lab must not write into the work tree)."""
    src = REPO / "notebooks"
    dest = Path(dest) / "notebooks"
    shutil.copytree(
        src, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc")
    )
    return dest


def fast_mlp_hidden() -> int:
    """The MLP width of the FAST preset the kernel runs with (512 unless the preset says)."""
    try:
        from prefixlab.config import PRESETS

        return int(PRESETS["fast"].mlp_hidden)
    except (ImportError, KeyError, AttributeError):
        return 512


def tiny_config():
    """The config of the embedded tiny model the real lab trains."""
    from transformers import AutoConfig

    from prefixlab.paths import data_dir

    folder = data_dir() / "tiny-gpt2"
    return AutoConfig.from_pretrained(str(folder))
