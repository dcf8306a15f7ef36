"""Interactive views (ipywidgets): where sliding beats reading. Each also works as a static figure."""
from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from course.plots import show_grid


def slider_view(frames: list, labels: list[str], description: str = "step", title: str = "",
                nrow: int | None = None) -> widgets.Widget:
    """A slider over precomputed image batches: frames[i] is a (B, C, H, W) tensor shown as one grid."""
    out = widgets.Output()
    slider = widgets.IntSlider(value=0, min=0, max=len(frames) - 1, description=description,
                               continuous_update=True, layout=widgets.Layout(width="60%"))
    caption = widgets.HTML()

    def draw(change=None):
        i = slider.value
        caption.value = f"<b>{labels[i]}</b>"
        with out:
            out.clear_output(wait=True)
            show_grid(frames[i], nrow=nrow or min(len(frames[i]), 10), title=title)
            plt.show()

    slider.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([slider, caption]), out])


def noise_slider(x0: torch.Tensor, diffusion, ts=None, seed: int = 0) -> widgets.Widget:
    """Drag t from 0 to T-1 and watch q(x_t | x_0) wash the digits out (the same noise at every t)."""
    from course.diffusion import q_sample

    ts = list(ts) if ts is not None else list(range(0, diffusion.T, 25)) + [diffusion.T - 1]
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    frames = [q_sample(x0, torch.full((len(x0),), t), noise, diffusion.alphas_cumprod) for t in ts]
    ab = diffusion.alphas_cumprod
    labels = [f"t = {t}: √ᾱ = {ab[t].sqrt():.3f}, √(1−ᾱ) = {(1 - ab[t]).sqrt():.3f}" for t in ts]
    return slider_view(frames, labels, description="t index")


def trajectory_stepper(path: list[torch.Tensor], timesteps: list[int]) -> widgets.Widget:
    """Step through a sampler's trajectory [x_T, ..., x_0] (from `Diffusion.sample(..., trajectory=True)`)."""
    labels = [f"x at t = {t}" for t in timesteps] + ["x_0 (clean)"]
    return slider_view(path, labels[: len(path)], description="step")


def scale_slider(grids: dict[float, torch.Tensor], title: str = "", nrow: int | None = None) -> widgets.Widget:
    """A slider over guidance scales w, each showing its precomputed sample grid (`nrow` per row)."""
    scales = sorted(grids)
    return slider_view([grids[w] for w in scales], [f"guidance w = {w:g}" for w in scales], description="w index",
                       title=title, nrow=nrow)
