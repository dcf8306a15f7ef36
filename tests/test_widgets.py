"""course/lab/widgets.py: every view is a self-contained HTML slider over precomputed PNG frames (no kernel needed)."""
import base64
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after use("Agg"))
import pytest  # noqa: E402
import torch  # noqa: E402

from course.lab.widgets import SliderView, grid_view, noise_slider, scale_slider, slider_view, trajectory_stepper  # noqa: E402


def frames_of(view_html):
    return re.findall(r'"([A-Za-z0-9+/=]{20,})"', view_html)


def test_slider_view_embeds_every_frame_and_needs_nothing_outside():
    frames = [torch.full((3, 1, 8, 8), v) for v in (-1.0, 0.0, 1.0)]
    view = slider_view(frames, ["dark", "grey", "light </script> & <b>"], description="level")
    html = view._repr_html_()
    assert isinstance(view, SliderView) and len(view) == 3
    assert 'type="range"' in html and 'max="2"' in html and "class=\"course-view\"" in html
    assert len(set(frames_of(html))) == 3  # three different frames travel with the page
    for data in set(frames_of(html)):
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in html and "https://" not in html  # no script or image from anywhere else
    assert html.count("</script>") == 1  # a label cannot close the script early
    assert "&lt;b&gt;" not in html.split("<script>")[0] or "light" in html


def test_grid_view_orders_frames_row_major_and_accepts_figures():
    seen = []

    def render(a, b):
        seen.append((a, b))
        fig, ax = plt.subplots(figsize=(1, 1))
        ax.plot([0, a], [0, b])
        return fig, f"a={a} b={b}"

    view = grid_view(render, {"a": [1, 2], "b": [3, 4, 5]})
    assert seen == [(1, 3), (1, 4), (1, 5), (2, 3), (2, 4), (2, 5)]
    assert view.labels[4] == "a=2 b=4" and [len(v) for _, v in view.controls] == [2, 3]
    assert view._repr_html_().count('type="range"') == 2
    assert not plt.get_fignums()  # figures are closed after rendering


def test_too_many_frames_are_refused():
    with pytest.raises(ValueError, match="at most"):
        grid_view(lambda a, b: torch.zeros(8, 8), {"a": range(100), "b": range(100)})
    with pytest.raises(ValueError, match="labels"):
        slider_view([torch.zeros(1, 1, 8, 8)], ["a", "b"])


def test_chapter_views_keep_their_signatures():
    from course.diffusion import Diffusion

    diffusion = Diffusion(T=100, schedule="linear")
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    assert len(noise_slider(x0, diffusion, ts=[0, 50, 99])) == 3
    path = [torch.randn(2, 1, 8, 8) for _ in range(4)]
    assert trajectory_stepper(path, [99, 66, 33]).labels[-1] == "x_0 (clean)"
    view = scale_slider({2.0: torch.zeros(6, 3, 8, 8), 1.0: torch.ones(6, 3, 8, 8)}, title="t", nrow=3)
    assert view.labels == ["guidance w = 1", "guidance w = 2"] and view.title == "t"


def test_attention_view_carries_weights_not_images():
    from course.lab.widgets import attention_view

    g = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 1, 8, 8, generator=g) * 2 - 1
    noisy = {50: clean, 300: clean.flip(-1)}
    maps = {t: torch.softmax(torch.randn(3, 2, 4, 16, 16, generator=g), -1) for t in noisy}
    view = attention_view(clean, noisy, maps, patch=2, labels=torch.tensor([7, 1]))
    assert [(n, len(v)) for n, v in view.controls] == [("digit", 2), ("t", 2), ("block", 3), ("head", 4),
                                                       ("query", 16)]
    raw = base64.b64decode(view.payload["attn"])
    assert len(raw) == 2 * 2 * 3 * 4 * 16 * 16 and max(raw) == 255  # each row scaled to its own maximum
    html = view._repr_html_()
    assert html.count('type="range"') == 5 and "<canvas" in html and "https://" not in html
    with pytest.raises(ValueError, match="patches"):
        attention_view(clean, noisy, maps, patch=3)
    with pytest.raises(ValueError, match="should be"):
        attention_view(clean, noisy, {t: m[:, :1] for t, m in maps.items()}, patch=2)
