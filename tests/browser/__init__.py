"""End-to-end harness: a real JupyterLab driven by Debian's headless Chromium through Playwright.

Used by tests/test_browser.py (marker ``browser``) and scripts/screenshot_lab.py:

* `server` — JupyterLab as a subprocess on 127.0.0.1 (random port and token, FAST preset),
  serving temporary copies of the notebooks;
* `page` — Chromium kept on the loopback, and a page that uses JupyterLab as a person does;
* `checks` — what the prefix-length lab and the attention heatmap must show;
* `fixtures/` — stand-in notebooks with the same widget contract and a one-second "training".

Nothing here installs anything; every wait is bounded.
"""
