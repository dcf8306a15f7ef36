"""Studies of record: the runner writes a record with its provenance, resumes after an interruption, knows when a
record is stale, and words verdicts only from what the record holds."""
import dataclasses
import json
import os
import subprocess
import sys

import torch

from course.grader.exercises import ROOT
from course.lab import studies


def _run(variant, seed, acc_w1, acc_w2=0.99, loss=0.2, fd=1.0):
    return {"variant": variant, "seed": seed, "acc_w1": acc_w1, "acc_w2": acc_w2, "loss": loss, "fd_w1": fd,
            "fd_w2": fd, "curve": []}


def _record(runs):
    return {"study": "chX", "runs": runs}


def test_verdict_separates_only_when_every_seed_agrees():
    rec = _record([_run("A", s, a) for s, a in enumerate([0.95, 0.93, 0.94])]
                  + [_run("B", s, b) for s, b in enumerate([0.90, 0.91, 0.92])])
    assert studies.verdict(rec, "A", "B").startswith("A is ahead of B in every one of 3 seeds")
    assert studies.verdict(rec, "B", "A").startswith("B is behind A in every one of 3 seeds")
    mixed = _record([_run("A", s, a) for s, a in enumerate([0.95, 0.90, 0.94])]
                    + [_run("B", s, b) for s, b in enumerate([0.90, 0.91, 0.92])])
    assert studies.verdict(mixed, "A", "B").startswith("The seeds do not separate A and B")


def test_verdict_lower_is_better_for_fd_and_loss():
    rec = _record([_run("A", s, 0.9, fd=f) for s, f in enumerate([1.0, 1.1, 1.2])]
                  + [_run("B", s, 0.9, fd=f) for s, f in enumerate([2.0, 2.1, 2.2])])
    assert studies.verdict(rec, "A", "B", "fd_w1").startswith("A is ahead of B")


def test_no_ranking_of_models_that_have_not_learned():
    rec = _record([_run("A", s, 0.2, acc_w2=0.25) for s in range(3)] + [_run("B", s, 0.1) for s in range(3)])
    v = studies.verdict(rec, "A", "B")
    assert "has not learned yet" in v and "ahead" not in v and "behind" not in v


def test_a_stalled_seed_is_named_and_left_out():
    rec = _record([_run("A", 0, 0.95, loss=0.20), _run("A", 1, 0.30, loss=0.56), _run("A", 2, 0.94, loss=0.21)]
                  + [_run("B", s, 0.90, loss=0.22) for s in range(3)])
    assert studies.stalled(rec, "A") == [1]
    v = studies.verdict(rec, "A", "B")
    assert v.startswith("A is ahead of B in every one of 2 seeds") and "outlier" in v and "seed 1." in v


def test_one_seed_is_no_finding():
    rec = _record([_run("A", 0, 0.95), _run("B", 0, 0.90)])
    assert "no finding" in studies.verdict(rec, "A", "B")


def test_every_chapter_study_is_declared_as_data():
    for key, study in studies.STUDIES.items():
        assert study.baseline in {v.name for v in study.variants}, key
        for profile in ("ci", "cpu", "gpu"):
            b = study.budget(profile)
            assert b.milestones[-1] == b.steps and list(b.milestones) == sorted(b.milestones)
        assert len(study.budget("cpu").seeds) >= 3, f"{key}: a study of record needs at least 3 seeds"
        json.dumps(study.declaration("cpu"))  # data, not code
        assert all(v.build in studies.BUILDS for v in study.variants)


def test_runner_writes_a_record_resumes_and_knows_when_it_is_stale(tmp_path, monkeypatch):
    small = studies.Study("chT", "03_uvit", "a test", "a claim", (studies.Variant("U-ViT", "uvit", {"depth": 2}),),
                          "U-ViT", {"ci": studies.Budget(3, (1, 3), (0, 1), n_per_class=1, sample_steps=2,
                                                         loss_repeats=1)})
    monkeypatch.setitem(studies.STUDIES, "chT", small)
    record = studies.run("chT", "ci", tmp_path, progress=False)
    assert record["complete"] and len(record["runs"]) == 2
    for key in ("commit", "code_hash", "profile", "device", "torch", "date", "wall_seconds"):
        assert key in record, key
    run = record["runs"][0]
    assert [p["steps"] for p in run["curve"]] == [1, 3] and "loss" in run["curve"][0]
    assert {"acc_w1", "acc_w2", "fd_w1", "fd_w2", "loss", "seed"} <= set(run)
    assert len(run["samples"]) == 10 * 8 * 8 and (tmp_path / "chT.png").exists()
    json.loads((tmp_path / "chT.json").read_text())  # valid JSON, no NaN

    # An interrupted study: drop the last run; running again trains only that one.
    saved = json.loads((tmp_path / "chT.json").read_text())
    saved["runs"], saved["complete"] = saved["runs"][:1], False
    (tmp_path / "chT.json").write_text(json.dumps(saved))
    calls = []
    real = studies.run_one
    monkeypatch.setattr(studies, "run_one", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    monkeypatch.setattr(studies, "code_hash", lambda study, profile: saved["code_hash"])
    record = studies.run("chT", "ci", tmp_path, progress=False)
    assert calls == [1] and record["complete"]

    # A complete, current record: running it again trains nothing and leaves the record, provenance and all, alone.
    kept = {**json.loads((tmp_path / "chT.json").read_text()), "date": "2000-01-01 00:00 UTC", "commit": "measured"}
    (tmp_path / "chT.json").write_text(json.dumps(kept))
    before = (tmp_path / "chT.json").read_bytes()
    assert studies.run("chT", "ci", tmp_path, progress=False) == kept
    assert calls == [1] and (tmp_path / "chT.json").read_bytes() == before

    status = dict(studies.status(tmp_path))
    assert status["chT"].startswith("current")
    monkeypatch.setattr(studies, "code_hash", lambda study, profile: "something else")
    assert dict(studies.status(tmp_path))["chT"].startswith("stale")


def test_runs_in_worker_processes_give_the_numbers_of_one_process(tmp_path, monkeypatch):
    small = studies.Study("chT", "03_uvit", "a test", "a claim",
                          (studies.Variant("U-ViT", "uvit", {"depth": 2}), studies.Variant("ViT", "vit", {"depth": 2})),
                          "U-ViT", {"ci": studies.Budget(3, (1, 3), (0, 1), n_per_class=1, sample_steps=2,
                                                         loss_repeats=1)})
    monkeypatch.setitem(studies.STUDIES, "chT", small)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker runs: the same order of float sums
    try:
        alone = studies.run("chT", "ci", tmp_path / "one", progress=False)
    finally:
        torch.set_num_threads(threads)
    # The workers are fresh interpreters: they find the test study in the arguments, not in STUDIES.
    both = studies.run("chT", "ci", tmp_path / "two", progress=False, jobs=2)
    assert both["complete"] and "2 processes of 1 thread" in both["device"]
    assert [(r["variant"], r["seed"]) for r in both["runs"]] == [(r["variant"], r["seed"]) for r in alone["runs"]]
    def measured(curve):  # every number of a curve but its seconds
        return [{k: v for k, v in point.items() if k != "seconds"} for point in curve]

    for a, b in zip(alone["runs"], both["runs"]):
        assert measured(a["curve"]) == measured(b["curve"]) and a["samples"] == b["samples"]
    assert not list((tmp_path / "two" / ".partial" / "chT").glob("*.pt"))  # the finished runs' checkpoints are gone


def test_a_records_state_does_not_depend_on_the_profile_it_is_read_in(tmp_path):
    # Chapter 6's study hashes the shapes judge and autoencoders, which the `ci` profile trains smaller: a `cpu`
    # record must read the same (current or stale) in a `ci` process, as the CI-built book reads it, as in a `cpu` one.
    script = "from course.lab import studies; print(studies.code_hash(studies.STUDIES['ch6'], 'cpu'))"
    hashes = {}
    for profile in ("ci", "cpu"):
        env = {**os.environ, "COURSE_PROFILE": profile, "COURSE_SOLUTIONS": "1", "COURSE_CACHE": str(tmp_path)}
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        hashes[profile] = out.stdout.strip().splitlines()[-1]
    assert hashes["ci"] == hashes["cpu"]


def test_status_command_exits_1_when_a_record_is_missing(tmp_path):
    out = subprocess.run([sys.executable, "-m", "course", "study", "--status", "--results", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 1 and "missing" in out.stdout


def test_committed_records_are_valid_and_read_as_tables():
    for path in sorted(studies.RESULTS_DIR.glob("*.json")):
        record = json.loads(path.read_text())
        assert record["study"] == path.stem and record["study"] in studies.STUDIES
        assert record["runs"] and studies.table(record).count("\n") >= 2
        assert "commit" in studies.provenance_line(record)


def test_the_hash_follows_what_a_model_computes_not_how_its_code_reads(monkeypatch):
    base = studies.Variant("U-ViT", "uvit", {"depth": 2})
    assert studies.fingerprint(base) == studies.fingerprint(base)  # seeded
    assert studies.fingerprint(base) != studies.fingerprint(studies.Variant("U-ViT", "uvit", {"depth": 4}))
    real = studies.BUILDS["uvit"]

    def scaled(**kwargs):  # the same model, with its output layer's initial weights halved
        model = real(**kwargs)
        with torch.no_grad():
            model.decoder_pred.weight.mul_(0.5)
        return model

    plain = studies.fingerprint(base)
    monkeypatch.setitem(studies.BUILDS, "uvit", lambda **kwargs: real(**kwargs))  # a refactor: the same numbers
    assert studies.fingerprint(base) == plain
    monkeypatch.setitem(studies.BUILDS, "uvit", scaled)
    assert studies.fingerprint(base) != plain


def test_the_fingerprint_does_not_depend_on_the_thread_count():
    variant = studies.Variant("adaLN", "conditioning-dit", {"conditioning": "adaLN"})
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = studies.fingerprint(variant)
        torch.set_num_threads(1)
        assert studies.fingerprint(variant) == two
    finally:
        torch.set_num_threads(threads)


def _hybrid_run(variant, seed, acc=None, fd=None, ece=None):
    return {"variant": variant, "seed": seed, "acc": acc, "fd": fd, "ece": ece, "min_share": 0.05 if fd else None,
            "curve": []}


def test_chapter4_verdicts_read_its_own_measures_and_its_own_learned_line():
    runs = ([_hybrid_run("HybViT", s, acc=0.95 + s / 100, fd=8.0 + s, ece=0.1) for s in range(3)]
            + [_hybrid_run("classifier only", s, acc=0.98, ece=0.05) for s in range(3)]
            + [_hybrid_run("GenViT", s, fd=9.5 + s) for s in range(3)]
            + [_hybrid_run("stuck", s, fd=30.0) for s in range(3)])
    rec = {"study": "chX", "task": "hybrid", "fd_floor": 0.7, "runs": runs}
    assert studies.verdict(rec, "HybViT", "classifier only", "acc").startswith("HybViT is behind classifier only")
    assert studies.verdict(rec, "HybViT", "GenViT", "fd").startswith("HybViT is ahead of GenViT in every one of 3")
    assert "not measured" in studies.verdict(rec, "GenViT", "HybViT", "acc")  # a generator has no test accuracy
    v = studies.verdict(rec, "stuck", "GenViT", "fd")  # FD 30 is over 20 times the floor of 0.7
    assert "has not learned yet" in v and "ahead" not in v and "behind" not in v
    table = studies.table(rec)
    assert "test accuracy" in table and "—" in table.splitlines()[4]  # GenViT's row: no accuracy


def test_chapter4_and_chapter6_studies_run_with_their_own_runners(tmp_path, monkeypatch):
    budget = studies.Budget(2, (1, 2), (0, 1), n_per_class=1, sample_steps=2, loss_repeats=1)
    for key, keep in (("ch4", ("HybViT", "classifier only", "DiT (adaLN-Zero)")),
                      ("ch6", ("latents, patch 2", "pixels, patch 8", "latents of spread 5.5, unscaled"))):
        full = studies.STUDIES[key]
        small = dataclasses.replace(full, key="chT", budgets={"ci": budget},
                                            variants=tuple(v for v in full.variants if v.name in keep))
        monkeypatch.setitem(studies.STUDIES, "chT", small)
        record = studies.run("chT", "ci", tmp_path / key, progress=False)
        assert record["complete"] and len(record["runs"]) == 6 and record["task"] == full.task
        assert record["fd_floor"] > 0 and (tmp_path / key / "chT.png").exists()
        assert set(studies.measures(record)) <= set(record["runs"][0]) | {"ece", "acc"}
        json.loads((tmp_path / key / "chT.json").read_text())  # valid JSON, no NaN
        assert dict(studies.status(tmp_path / key))["chT"].startswith("current")
    classifier = [r for r in studies.load_record("chT", tmp_path / "ch4")["runs"] if r["variant"] == "classifier only"]
    assert "fd" not in classifier[0] and classifier[0]["samples"] is None  # a classifier draws nothing


def test_chapter6_latents_of_a_chosen_spread_hold_the_same_images():
    scaled, y, decode = studies.shapes_data(kl_weight=1e-6)
    far, y_far, far_decode = studies.shapes_data(kl_weight=1e-6, spread=5.5, scaled=False)
    assert abs(scaled.std().item() - 1.0) < 1e-4 and abs(far.std().item() - 5.5) < 1e-3  # s gives unit spread
    assert torch.equal(y, y_far)
    torch.testing.assert_close(far_decode(far[:4]), decode(scaled[:4]), atol=1e-5, rtol=1e-5)  # the same images
    pixels, _, none = studies.shapes_data()
    assert none is None and pixels.shape[1:] == (3, studies.LATENT_SIZE, studies.LATENT_SIZE)


def test_chapter7_backbones_run_side_by_side_as_they_run_one_after_another():
    """`run_backbones` with two worker processes gives every number (but the seconds) that the runs give one after
    another in this process at one thread, each under its own name and seed."""
    from functools import partial

    from course.lab.experiments import run_backbones

    builders = {"U-ViT": partial(studies.BUILDS["uvit"], depth=2), "ViT": partial(studies.BUILDS["vit"], depth=2)}
    conditional = {"U-ViT": True, "ViT": False}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker runs: the same order of float sums
    try:
        alone = run_backbones(builders, conditional, [0, 1], steps=3, n_eval=1, sample_steps=2, workers=1)
    finally:
        torch.set_num_threads(threads)
    both = run_backbones(builders, conditional, [0, 1], steps=3, n_eval=1, sample_steps=2, workers=2)
    assert list(both) == ["U-ViT", "ViT"] and all(len(runs) == 2 for runs in both.values())
    for name in builders:
        for a, b in zip(alone[name], both[name]):
            assert [{k: v for k, v in p.items() if k != "seconds"} for p in a["curve"]] == \
                [{k: v for k, v in p.items() if k != "seconds"} for p in b["curve"]]
            assert [p["steps"] for p in a["curve"]] == [1, 2, 3]
            assert torch.equal(a["samples"], b["samples"]) and torch.equal(a["labels"], b["labels"])
    assert not torch.equal(both["U-ViT"][0]["samples"], both["U-ViT"][1]["samples"])  # the seeds differ


def test_a_call_that_raises_in_a_worker_raises_here():
    import math

    import pytest

    from course.lab.experiments import in_processes

    assert sorted(in_processes(math.sqrt, [(4.0,), (9.0,), (16.0,)], workers=2)) == [(0, 2.0), (1, 3.0), (2, 4.0)]
    with pytest.raises(ValueError, match="math domain error"):
        list(in_processes(math.sqrt, [(4.0,), (-1.0,)], workers=2))


def test_your_run_is_drawn_beside_the_records_runs_of_the_same_model():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = [{"steps": 250, "acc_w1": 0.2}, {"steps": 500, "acc_w1": 0.3}, {"steps": 1000, "acc_w1": 0.4}]
    runs = [dict(_run("latents", s, 0.4), curve=curve) for s in (0, 1, 2)] + [_run("pixels", 0, 0.1)]
    ax = studies.plot_beside(_record(runs), "latents", {"acc_w1": 0.65, "steps": 2100})
    lines = ax.get_lines()
    assert len(lines) == 3, "one line per seed of the variant, none of the others"
    assert all(list(line.get_xdata()) == [250, 500, 1000] for line in lines)
    (star,) = ax.collections
    assert star.get_offsets().tolist() == [[2100, 0.65]], "the reader's run sits at its own steps and accuracy"
    assert "your run (2,100 steps)" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(ax.figure)  # other tests count the open figures
