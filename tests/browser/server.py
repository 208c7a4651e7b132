"""JupyterLab as a subprocess on 127.0.0.1, for the browser tests.

A free port and a random token; fresh config, data, runtime, settings and workspace folders;
news and update checks off; the kernel gets the FAST training preset and the offline switches.
`LabServer` is a context manager that always stops the server (its process group, plus every
process it started, kernels included). The lab serves a temporary folder (`lab_root`) with
copies of the notebooks: running them there never touches the work tree.
"""

from __future__ import annotations

import contextlib
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SERVER_START_TIMEOUT = float(os.environ.get("PREFIXLAB_BROWSER_START_TIMEOUT", "180"))


def lab_root(root: Path) -> Path:
    """Fill `root` with what the lab serves: a copy of the repository's notebooks/ and the
    stand-in notebooks (tests/browser/fixtures) under standins/. The copies are what the lab
    runs and may save; the committed notebooks are never opened."""
    root = Path(root)
    skip = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc")
    shutil.copytree(REPO / "notebooks", root / "notebooks", ignore=skip)
    shutil.copytree(FIXTURES, root / "standins", ignore=skip)
    return root


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
                # The kernel runs in the lab's temporary folder: make it import the prefixlab
                # of this checkout, not whichever one the environment has installed.
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
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
