"""The lab checks: what the prefix-length lab and the attention heatmap must show in a browser.

Both find what they read by visible text (labels, captions, the status line), so they work on
any notebook that follows `PREFIX_LAB_CONTRACT`; the stand-in notebooks in fixtures/ follow it
with a one-second "training" and prove the checks themselves work. Every number shown is
compared with what prefixlab.accounting says.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .page import UI_TIMEOUT, LabPage, checkbox_state, find_widget, slider_value
from .server import FIXTURES

RETRAIN_TIMEOUT = float(os.environ.get("PREFIXLAB_BROWSER_RETRAIN_TIMEOUT", "600"))
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
  * a status line starting "training…" while a run is going (or "waiting…" while it waits for
    the controls to settle); "failed"/"stopped" on errors; for `rapid_presses`, "done" lines
    that number the run and name the setting shown before it ("done · run 4: ..., P=46, ...
    (before: ..., P=41, ...)");
  * the retraining runs in the kernel when a control changes.
"""


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
    # "waiting…": the lab waits for the controls to settle before it retrains (debounce).
    busy_status: str = r"^\s*(training|waiting)(…|\.\.\.)"
    done_status: str = r"^\s*done\b"
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
            "done": self._status(cells, self.done_status),
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
        says. Finished means: the kernel is idle and no status line reads "training…" or
        "waiting…" (the kernel is idle while the lab waits for the controls to settle, and can
        report idle while a widget callback still runs). Fails at once on a "failed" status line, and early when
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

    def rapid_presses(self, lab: LabPage, presses: int = 5, key: str = "ArrowRight") -> dict:
        """Press `key` on the slider `presses` times with no wait (a person holding a key):
        the lab must retrain once, for the final value, and its status line must name the
        setting it showed before the presses ("done · run 4: ..., P=46, ... (before: ...,
        P=41, ...)"). Run it after `run` (on the same page)."""
        page = lab.page
        config = self.config()
        with lab.step("read the lab before the key presses"):
            start = self.wait_consistent(lab, config, None, "the lab to settle")
            run0, before0 = run_and_before(start["done"])
            if run0 is None:
                raise AssertionError(f"the status line {start['done']!r} numbers no run")
        with lab.step(f"press {key} {presses} times on the '{self.slider}' slider"):
            slider = find_widget(page, "slider", self.slider)
            handle = slider.locator(".noUi-handle").first
            handle.scroll_into_view_if_needed()
            handle.focus()
            t0 = time.monotonic()
            for _ in range(presses):
                handle.press(key)  # no wait: each press is a change the kernel hears about
            step = presses if key == "ArrowRight" else -presses
            want = start["prefix_length"] + step
            page.wait_for_function(
                """([el, want]) => el.textContent.trim() === want""",
                arg=[slider.locator(".widget-readout").element_handle(), str(want)],
                timeout=UI_TIMEOUT * 1000,
            )
            self.wait_consistent(lab, config, start, f"{presses} presses of {key}")
            seconds = time.monotonic() - t0
            lab.wait(3.0)  # well past the debounce: a second retrain would have begun
            final = self.read(lab)
            if final["busy"]:
                raise AssertionError(f"a second retrain began after the first: {final['busy']}")
            run1, before1 = run_and_before(final["done"])
            if run1 != run0 + 1:
                raise AssertionError(
                    f"{presses} quick presses gave {None if run1 is None else run1 - run0} "
                    f"retrains, not one (status before: {start['done']!r}; after: "
                    f"{final['done']!r})"
                )
            if final["prefix_length"] != want or f"P={want}," not in final["done"]:
                raise AssertionError(f"the retrain was not for P={want}: {final['done']!r}")
            if before1 != start["prefix_length"]:
                raise AssertionError(
                    f"'before' should be the last finished setting, P={start['prefix_length']}: "
                    f"{final['done']!r}"
                )
        return {
            "from": start["prefix_length"],
            "to": want,
            "status_before": start["done"],
            "status_after": final["done"],
            "seconds": seconds,
        }


def run_and_before(done: str) -> tuple[int | None, int | None]:
    """The run number and the prefix length named "before" in a status line such as
    "done · run 4: prefix tuning, P=46, 30 steps (before: prefix tuning, P=41, 30 steps) ..."."""
    run = re.search(r"\brun (\d+)\b", done)
    before = re.search(r"\(before: [^)]*?\bP=(\d+)", done)
    return (int(run.group(1)) if run else None, int(before.group(1)) if before else None)


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


def standin_config():
    """The model config the stand-in lab counts with (fixtures/standin_config.json)."""
    from transformers import GPT2Config

    return GPT2Config(**json.loads((FIXTURES / "standin_config.json").read_text()))


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
