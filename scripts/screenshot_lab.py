"""Regenerate docs/prefix_length_lab.png: the prefix-length lab at work in JupyterLab.

Uses the harness of the browser tests (tests/browser/): JupyterLab on 127.0.0.1 with a
random token and the FAST preset, Debian's headless Chromium through Playwright. The notebook
is run from a temporary copy (the work tree is not touched), all cells are run from the menu,
the prefix-length slider is moved one step with the keyboard and the MLP switch is turned on,
and every number on screen is checked against prefixlab.accounting before the picture is taken.

    python scripts/screenshot_lab.py                     # -> docs/prefix_length_lab.png
    python scripts/screenshot_lab.py --out /tmp/lab.png
    python scripts/screenshot_lab.py --standin           # the harness's stand-in notebook

Needs what the browser tests need and installs nothing: Debian's Chromium (`apt-get update &&
apt-get install -y chromium`, as root) and the test extra's playwright and jupyterlab. Nothing
leaves the loopback interface.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from browser import checks, page, server  # noqa: E402

NOTEBOOK = "notebooks/05_prefix_length_lab.ipynb"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "prefix_length_lab.png")
    parser.add_argument("--standin", action="store_true", help="use the stand-in notebook")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=960)
    args = parser.parse_args(argv)

    if not args.standin and not (REPO / NOTEBOOK).is_file():
        parser.error(f"{NOTEBOOK} does not exist (use --standin to try the harness)")
    try:
        chromium = page.find_chromium()
    except page.BrowserUnavailable as err:
        print(f"cannot take the screenshot: {err}", file=sys.stderr)
        return 2
    server.check_labextensions()

    with tempfile.TemporaryDirectory(prefix="prefixlab-screenshot-") as tmp:
        root = server.lab_root(Path(tmp))  # copies: the work tree is not touched
        if args.standin:
            check = checks.PrefixLabCheck(
                notebook="standins/05_prefix_length_lab.ipynb", config=checks.standin_config
            )
        else:
            check = checks.PrefixLabCheck(
                notebook=NOTEBOOK, config=checks.tiny_config, mlp_hidden=checks.fast_mlp_hidden()
            )
        lab_server = server.LabServer(root)
        try:
            with lab_server, page.chromium_browser(chromium) as browser:
                lab = page.LabPage(browser, lab_server, root / "shots", args.width, args.height)
                try:
                    summary = check.run(lab)
                finally:
                    lab.close()
        finally:
            lab_server.cleanup()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(summary["screenshot"], args.out)
    after = summary["after_mlp"]
    print(
        f"wrote {args.out} (prefix length {after['prefix_length']}, MLP {after['mlp']}, "
        f"{after['count']:,} trainable parameters; {summary['timings']['total']:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
