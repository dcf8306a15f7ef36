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
- `noise_slider`, `trajectory_stepper`, `scale_slider`: the chapters' views, built on `slider_view`;
- `attention_view(clean, noisy, maps, patch)`: where one patch of a ViT looks, for every digit, timestep, block,
  head and query patch; drawn in the browser from the attention weights (too many combinations for images).

A frame is an image batch (B, C, H, W) in [-1, 1] (tiled as a grid, like `course.lab.plots.show_grid`), one image
tensor (C, H, W) in [-1, 1], an array (H, W) or (H, W, 3) with values in [0, 1], a matplotlib Figure (closed after
rendering), or PNG bytes.
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

from course.lab.plots import grid_image, to_image

MAX_FRAMES = 2000  # a guard: every frame travels inside the notebook and the page


def to_png(frame, nrow: int | None = None) -> bytes:
    """Encode a frame (see the module docstring) as PNG bytes; image arrays keep their pixel size."""
    if isinstance(frame, (bytes, bytearray)):
        return bytes(frame)
    if hasattr(frame, "savefig"):  # a matplotlib Figure
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        frame.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
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
        # small images (grids of 8×8 digits) are enlarged by an integer factor, drawn with sharp pixels; figures
        # (hundreds of pixels) are shown as they are
        self.zoom = max(1, min(width // max(w, 1), 400 // max(h, 1))) if max(w, h) <= 160 else 1
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


# ---------------------------------------------------------------------------------------------------------------
# Attention maps: drawn in the browser from the weights (digits × timesteps × blocks × heads × queries frames)
# ---------------------------------------------------------------------------------------------------------------
def _bytes_b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.uint8).tobytes()).decode()


def _gray_u8(x: torch.Tensor) -> np.ndarray:
    """(n, C, H, W) in [-1, 1] -> (n, H, W) uint8 (the mean over channels)."""
    x = x.detach().float().cpu().clamp(-1, 1).mean(1)
    return ((x + 1) * 127.5).round().to(torch.uint8).numpy()


class AttentionView:
    """The view `attention_view` returns: self-contained HTML + JavaScript drawing on three canvases."""

    def __init__(self, payload: dict, controls: list[tuple[str, list[str]]], title: str = ""):
        self.payload, self.controls, self.title = payload, controls, title

    def __repr__(self) -> str:
        names = ", ".join(f"{name} ({len(values)})" for name, values in self.controls)
        return f"<AttentionView over {names}; shown as HTML>"

    def _repr_html_(self) -> str:
        uid = "cv" + uuid.uuid4().hex[:12]
        rows = "".join(
            f'<label style="display:flex;align-items:center;gap:0.6em;margin:0.15em 0">'
            f'<span style="min-width:7em">{html.escape(name)}</span>'
            f'<input type="range" class="course-view-control" data-name="{html.escape(name)}" min="0" '
            f'max="{len(values) - 1}" value="0" step="1" style="width:40%" aria-label="{html.escape(name)}">'
            f'<span class="course-view-value" style="font-family:monospace">{html.escape(values[0])}</span></label>'
            for name, values in self.controls)
        title = f'<div style="font-weight:bold">{html.escape(self.title)}</div>' if self.title else ""
        payload = json.dumps(self.payload).replace("</", "<\\/")
        side = self.payload["H"] * self.payload["zoom"]
        canvas = ('<figure style="margin:0;text-align:center"><canvas width="{w}" height="{h}" data-panel="{k}" '
                  'style="border:1px solid #ccc{extra}"></canvas><figcaption style="font-size:85%">{c}</figcaption>'
                  '</figure>')
        panels = "".join(canvas.format(w=side, h=side, k=k, c=c, extra=";cursor:crosshair" if k == 2 else "")
                         for k, c in enumerate(["clean digit", "input x_t", "attention of the query (cyan)"]))
        return f"""<div class="course-view course-attention-view" id="{uid}" style="margin:0.5em 0">
{title}{rows}
<div class="course-view-caption" style="margin:0.2em 0"><b></b></div>
<div style="display:flex;gap:1em;align-items:flex-start">{panels}</div>
<script>
(function () {{
  var root = (document.currentScript && document.currentScript.closest(".course-view"))
             || document.getElementById("{uid}");
  if (!root || root.dataset.ready) return;
  root.dataset.ready = "1";
  var P = {payload};
  function bytes(b64) {{ var s = atob(b64), a = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) a[i] = s.charCodeAt(i); return a; }}
  var clean = bytes(P.clean), noisy = bytes(P.noisy), attn = bytes(P.attn), lut = P.lut;
  var H = P.H, W = P.W, z = P.zoom, p = P.patch, g = W / p, N = P.N;
  var inputs = {{}}, shown = {{}};
  root.querySelectorAll("input.course-view-control").forEach(function (el) {{
    inputs[el.dataset.name] = el; shown[el.dataset.name] = el.parentNode.querySelector(".course-view-value"); }});
  var canvases = root.querySelectorAll("canvas");
  function v(name) {{ return parseInt(inputs[name].value, 10); }}
  function gray(ctx, data, offset) {{
    for (var y = 0; y < H; y++) for (var x = 0; x < W; x++) {{
      var c = data[offset + y * W + x]; ctx.fillStyle = "rgb(" + c + "," + c + "," + c + ")";
      ctx.fillRect(x * z, y * z, z, z); }}
  }}
  function draw() {{
    var d = v("digit"), t = v("t"), b = v("block"), h = v("head"), q = v("query");
    for (var name in inputs) shown[name].textContent = P.values[name][v(name)];
    gray(canvases[0].getContext("2d"), clean, d * H * W);
    gray(canvases[1].getContext("2d"), noisy, (d * P.T + t) * H * W);
    var ctx = canvases[2].getContext("2d");
    var row = ((((d * P.T + t) * P.depth + b) * P.heads + h) * N + q) * N;
    for (var k = 0; k < N; k++) {{
      var r = Math.floor(k / g), c = k % g;
      ctx.fillStyle = lut[attn[row + k]];
      ctx.fillRect(c * p * z, r * p * z, p * z, p * z);
    }}
    // the digit's outline: a white edge wherever ink meets background
    ctx.strokeStyle = "rgba(255,255,255,0.9)"; ctx.lineWidth = Math.max(1, z / 8); ctx.beginPath();
    function ink(y, x) {{ return y >= 0 && y < H && x >= 0 && x < W && clean[d * H * W + y * W + x] > 127; }}
    for (var y = 0; y <= H; y++) for (var x = 0; x <= W; x++) {{
      if (ink(y, x) !== ink(y - 1, x)) {{ ctx.moveTo(x * z, y * z); ctx.lineTo((x + 1) * z, y * z); }}
      if (ink(y, x) !== ink(y, x - 1)) {{ ctx.moveTo(x * z, y * z); ctx.lineTo(x * z, (y + 1) * z); }}
    }}
    ctx.stroke();
    ctx.strokeStyle = "cyan"; ctx.lineWidth = Math.max(2, z / 5);
    ctx.strokeRect((q % g) * p * z + 1, Math.floor(q / g) * p * z + 1, p * z - 2, p * z - 2);
    var caption = root.querySelector(".course-view-caption b");
    caption.textContent = "digit " + P.values.digit[d] + " (class " + P.labels[d] + "), t = " + P.values.t[t] +
      ", block " + b + ", head " + h + ", query patch " + q + ": largest weight " + P.peak[row / N].toFixed(2);
    root.dataset.frame = [d, t, b, h, q].join(",");
  }}
  for (var name in inputs) {{
    inputs[name].addEventListener("input", draw);
    inputs[name].addEventListener("change", draw);
  }}
  canvases[2].addEventListener("click", function (e) {{  // click a patch to make it the query
    var box = canvases[2].getBoundingClientRect(), s = canvases[2].width / box.width;
    var c = Math.floor((e.clientX - box.left) * s / (p * z)), r = Math.floor((e.clientY - box.top) * s / (p * z));
    inputs.query.value = Math.min(N - 1, Math.max(0, r * g + c)); draw();
  }});
  draw();
}})();
</script>
</div>"""


def attention_view(clean: torch.Tensor, noisy: dict, maps: dict, patch: int, labels=None, title: str = "",
                   zoom: int | None = None) -> AttentionView:
    """Where each patch looks: sliders over digit, timestep t, block, head and query patch.

    clean: (n, C, H, W) images in [-1, 1]; noisy[t]: (n, C, H, W) the inputs x_t at each timestep t; maps[t]:
    (depth, n, heads, N, N) attention probabilities (rows sum to 1) of the model on noisy[t], N = (H/patch)·(W/patch)
    patches in row-major order; `labels` (n,) the classes shown in the caption. Each map row is drawn scaled to its
    own maximum. Only the weights travel with the page (n·T·depth·heads·N·N bytes), not images.
    """
    ts = list(noisy)
    if list(maps) != ts:
        raise ValueError(f"noisy and maps must have the same timesteps, got {ts} and {list(maps)}")
    n, _, H, W = clean.shape
    if H % patch or W % patch:
        raise ValueError(f"image {H}×{W} is not a whole number of {patch}×{patch} patches")
    N = (H // patch) * (W // patch)
    stacked = torch.stack([maps[t].detach().float().cpu() for t in ts])  # (T, depth, n, heads, N, N)
    if stacked.shape[2] != n or stacked.shape[-2:] != (N, N):
        raise ValueError(f"maps[t] should be (depth, {n}, heads, {N}, {N}), got {tuple(stacked.shape[1:])}")
    T, depth, _, heads = stacked.shape[:4]
    stacked = stacked.permute(2, 0, 1, 3, 4, 5)  # (n, T, depth, heads, N, N)
    peak = stacked.amax(-1, keepdim=True).clamp_min(1e-12)
    quantized = (stacked / peak * 255).round().to(torch.uint8).numpy()
    from matplotlib import colormaps

    lut = ["#%02x%02x%02x" % tuple(int(255 * c) for c in colormaps["magma"](i)[:3]) for i in range(256)]
    zoom = zoom or max(4, 192 // max(H, W))
    labels = [str(int(v)) for v in labels] if labels is not None else ["?"] * n
    payload = {
        "clean": _bytes_b64(_gray_u8(clean)),
        "noisy": _bytes_b64(np.stack([_gray_u8(noisy[t]) for t in ts], 1)),  # (n, T, H, W)
        "attn": _bytes_b64(quantized), "lut": lut, "H": H, "W": W, "N": N, "patch": patch, "zoom": zoom,
        "T": T, "depth": depth, "heads": heads, "labels": labels,
        "peak": [round(float(v), 2) for v in peak.flatten()],
        "values": {"digit": [str(i) for i in range(n)], "t": [str(t) for t in ts],
                   "block": [str(b) for b in range(depth)], "head": [str(h) for h in range(heads)],
                   "query": [str(q) for q in range(N)]},
    }
    controls = [(name, payload["values"][name]) for name in ["digit", "t", "block", "head", "query"]]
    return AttentionView(payload, controls, title)
