"""Interactive views: where sliding beats reading.

Every view is precomputed: its frames are rendered once, in Python, to small PNGs, and the object a view function
returns displays as a self-contained HTML snippet (`_repr_html_`): the frames as base64 data, sliders
(`<input type=range>`) and a few lines of JavaScript that swap the shown frame. No kernel is needed to move it, so
the same output works in JupyterLab, VS Code, Colab and in the static pages of the built book (where an
ipywidgets callback has no kernel to call). Without JavaScript (a notebook viewer that strips scripts) the first
frame is still shown as a plain image.

There is deliberately no ipywidgets version: one representation everywhere is easier to test (the book's browser
test moves every view) and cannot drift from a second one.

- `slider_view(frames, labels)`: the common base, one slider over a list of frames;
- `grid_view(render, controls)`: several sliders; `render(**values)` draws the frame for each combination;
- `noise_slider`, `trajectory_stepper`, `scale_slider`: the chapters' views, built on `slider_view`.

A frame is an image batch (B, C, H, W) in [-1, 1] (tiled as a grid, like `course.plots.show_grid`), one image
(H, W) or (H, W, 3) with values in [0, 1], a matplotlib Figure (closed after rendering), or PNG bytes.
"""
from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
import uuid
from typing import Callable, Sequence

import numpy as np
import torch

from course.plots import grid_image, to_image

MAX_FRAMES = 2000  # a guard: every frame travels inside the notebook and the page


def to_png(frame, nrow: int | None = None) -> bytes:
    """Encode a frame (see the module docstring) as PNG bytes; image arrays keep their pixel size."""
    if isinstance(frame, (bytes, bytearray)):
        return bytes(frame)
    if hasattr(frame, "savefig"):  # a matplotlib Figure
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        frame.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
        plt.close(frame)
        return buffer.getvalue()
    if isinstance(frame, torch.Tensor) and frame.dim() == 4:
        image = grid_image(frame, nrow or min(len(frame), 10))
    elif isinstance(frame, torch.Tensor) and frame.dim() == 3:
        image = to_image(frame)
    else:
        image = np.asarray(frame.detach().cpu() if isinstance(frame, torch.Tensor) else frame, dtype=np.float32)
    import matplotlib.image

    buffer = io.BytesIO()
    image = np.clip(image, 0, 1)
    matplotlib.image.imsave(buffer, image, format="png", cmap="gray", vmin=0, vmax=1)
    return buffer.getvalue()


def _png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG header."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


class SliderView:
    """Precomputed frames behind one or more sliders; displays as self-contained HTML + JavaScript.

    `frames` are PNG bytes in row-major order over `controls` (a list of (name, value labels)); `labels[i]` is the
    caption of frame i. `zoom` scales small images up (pixelated) to about `width` CSS pixels.
    """

    def __init__(self, frames: list[bytes], labels: list[str], controls: list[tuple[str, list[str]]],
                 title: str = "", width: int = 560):
        sizes = [len(values) for _, values in controls]
        if len(frames) != math.prod(sizes) or len(labels) != len(frames):
            raise ValueError(f"{len(frames)} frames and {len(labels)} labels for controls of sizes {sizes}")
        if not frames:
            raise ValueError("a view needs at least one frame")
        self.frames, self.labels, self.controls, self.title = frames, labels, controls, title
        w, h = _png_size(frames[0])
        # small images (8×8 digits) are enlarged by an integer factor, drawn with sharp pixels
        self.zoom = max(1, min(width // max(w, 1), 400 // max(h, 1))) if w < width / 2 else 1
        self.width, self.height = w * self.zoom, h * self.zoom

    def __len__(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        names = ", ".join(f"{name} ({len(values)})" for name, values in self.controls)
        return f"<{type(self).__name__}: {len(self.frames)} frames over {names}; shown as HTML>"

    def _repr_html_(self) -> str:
        uid = "cv" + uuid.uuid4().hex[:12]
        data = {"frames": [base64.b64encode(f).decode() for f in self.frames], "labels": self.labels,
                "sizes": [len(v) for _, v in self.controls], "values": [v for _, v in self.controls]}
        rows = []
        for d, (name, values) in enumerate(self.controls):
            rows.append(
                f'<label style="display:flex;align-items:center;gap:0.6em;margin:0.15em 0">'
                f'<span style="min-width:7em">{html.escape(name)}</span>'
                f'<input type="range" class="course-view-control" data-dim="{d}" min="0" max="{len(values) - 1}" '
                f'value="0" step="1" style="width:50%" aria-label="{html.escape(name)}">'
                f'<span class="course-view-value" style="font-family:monospace">{html.escape(values[0])}</span>'
                f'</label>')
        title = f'<div style="font-weight:bold">{html.escape(self.title)}</div>' if self.title else ""
        first = base64.b64encode(self.frames[0]).decode()
        # json.dumps does not escape "</": a label could end the script element early
        payload = json.dumps(data).replace("</", "<\\/")
        return f"""<div class="course-view" id="{uid}" style="margin:0.5em 0">
{title}{''.join(rows)}
<div class="course-view-caption" style="margin:0.2em 0"><b>{html.escape(self.labels[0])}</b></div>
<img class="course-view-frame" alt="frame" width="{self.width}" height="{self.height}"
     style="image-rendering:pixelated;image-rendering:crisp-edges;max-width:100%;height:auto"
     src="data:image/png;base64,{first}">
<script>
(function () {{
  var root = (document.currentScript && document.currentScript.closest(".course-view"))
             || document.getElementById("{uid}");
  if (!root || root.dataset.ready) return;
  root.dataset.ready = "1";
  var data = {payload};
  var inputs = root.querySelectorAll("input.course-view-control");
  var shown = root.querySelectorAll(".course-view-value");
  var img = root.querySelector("img.course-view-frame");
  var caption = root.querySelector(".course-view-caption b");
  function draw() {{
    var index = 0;
    for (var d = 0; d < inputs.length; d++) {{
      var v = parseInt(inputs[d].value, 10);
      index = index * data.sizes[d] + v;
      shown[d].textContent = data.values[d][v];
    }}
    img.src = "data:image/png;base64," + data.frames[index];
    caption.textContent = data.labels[index];
    root.dataset.frame = index;
  }}
  for (var d = 0; d < inputs.length; d++) {{
    inputs[d].addEventListener("input", draw);
    inputs[d].addEventListener("change", draw);
  }}
  draw();
}})();
</script>
</div>"""


def slider_view(frames: list, labels: list[str], description: str = "step", title: str = "",
                nrow: int | None = None) -> SliderView:
    """A slider over precomputed frames: frames[i] (an image batch (B, C, H, W) shown as one grid of `nrow` per
    row, an image, a matplotlib Figure or PNG bytes) is shown with the caption labels[i]."""
    if len(frames) != len(labels):
        raise ValueError(f"{len(frames)} frames but {len(labels)} labels")
    if len(frames) > MAX_FRAMES:
        raise ValueError(f"{len(frames)} frames: at most {MAX_FRAMES} (each one is stored in the notebook)")
    pngs = [to_png(f, nrow) for f in frames]
    return SliderView(pngs, list(map(str, labels)), [(description, [str(i) for i in range(len(frames))])], title)


def grid_view(render: Callable, controls: dict[str, Sequence], title: str = "", nrow: int | None = None) -> SliderView:
    """One slider per control; `render(**values)` returns the frame (or `(frame, caption)`) for each combination
    of the controls' values, all rendered now (the product of the sizes must stay ≤ MAX_FRAMES).

    Example: `grid_view(lambda t, w: samples[t, w], {"t": [50, 300], "w": [1.0, 2.0]})`.
    """
    names, options = list(controls), [list(v) for v in controls.values()]
    total = math.prod(len(o) for o in options)
    if total > MAX_FRAMES:
        raise ValueError(f"{total} combinations: at most {MAX_FRAMES} (each frame is stored in the notebook)")
    frames, labels = [], []
    for combo in itertools.product(*options):
        values = dict(zip(names, combo))
        out = render(**values)
        frame, caption = out if isinstance(out, tuple) else (out, ", ".join(f"{k} = {v}" for k, v in values.items()))
        frames.append(to_png(frame, nrow))
        labels.append(str(caption))
    return SliderView(frames, labels, [(n, [str(v) for v in o]) for n, o in zip(names, options)], title)


def noise_slider(x0: torch.Tensor, diffusion, ts=None, seed: int = 0) -> SliderView:
    """Drag t from 0 to T-1 and watch q(x_t | x_0) wash the digits out (the same noise at every t)."""
    from course.diffusion import q_sample

    ts = list(ts) if ts is not None else list(range(0, diffusion.T, 25)) + [diffusion.T - 1]
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    frames = [q_sample(x0, torch.full((len(x0),), t), noise, diffusion.alphas_cumprod) for t in ts]
    ab = diffusion.alphas_cumprod
    labels = [f"t = {t}: √ᾱ = {ab[t].sqrt():.3f}, √(1−ᾱ) = {(1 - ab[t]).sqrt():.3f}" for t in ts]
    return slider_view(frames, labels, description="t index")


def trajectory_stepper(path: list[torch.Tensor], timesteps: list[int]) -> SliderView:
    """Step through a sampler's trajectory [x_T, ..., x_0] (from `Diffusion.sample(..., trajectory=True)`)."""
    labels = [f"x at t = {t}" for t in timesteps] + ["x_0 (clean)"]
    return slider_view(path, labels[: len(path)], description="step")


def scale_slider(grids: dict[float, torch.Tensor], title: str = "", nrow: int | None = None) -> SliderView:
    """A slider over guidance scales w, each showing its precomputed sample grid (`nrow` per row)."""
    scales = sorted(grids)
    return slider_view([grids[w] for w in scales], [f"guidance w = {w:g}" for w in scales], description="w index",
                       title=title, nrow=nrow)
