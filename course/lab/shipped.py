"""The trained helpers the course ships (`course/lab/weights/`), and the command that makes them again.

The judges (the digit classifier of every chapter, the shapes classifier of chapter 6) and chapter 6's three
autoencoders are small and deterministic to train, but training them cold cost every fresh book build and every test
run minutes. They are trained once, for the `cpu` configurations, by

    python -m course weights            # retrain every shipped helper into course/lab/weights/

and loaded from there when the user's cache has none (`course.lab.config.stored`). `tests/test_weights.py` retrains
the digits judge and checks that it matches the shipped one within `JUDGE_TOLERANCE`.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict

import torch

from course.lab.config import SHIPPED_WEIGHTS

JUDGE_TOLERANCE = 0.015  # a retrained judge's test accuracy is within 1.5 points of the shipped one's
SHAPES_JUDGE_STEPS = 250  # the `cpu` profile's (course.lab.metrics.judge_steps)
AE_KL_WEIGHTS = (1e-6, 1e-4, 1e-2)  # chapter 6's sweep, at 32×32 and the `cpu` profile's 800 steps


def _save(blob: dict, filename: str) -> None:
    SHIPPED_WEIGHTS.mkdir(parents=True, exist_ok=True)
    tmp = SHIPPED_WEIGHTS / f"{filename}.{os.getpid()}.tmp"
    torch.save(blob, tmp)
    tmp.replace(SHIPPED_WEIGHTS / filename)


def make_judges() -> list[str]:
    from course.lab.metrics import JUDGE_VERSION, train_judge

    made = []
    shapes = f"judge-shapes-32-{SHAPES_JUDGE_STEPS}steps"
    for dataset, size, steps, name in (("digits", 8, 800, "judge-digits-8"),
                                        ("shapes", 32, SHAPES_JUDGE_STEPS, shapes)):
        start = time.perf_counter()
        judge = train_judge(size, steps=steps, dataset=dataset)
        filename = f"{name}-v{JUDGE_VERSION}.pt"
        _save({"state_dict": judge.net.state_dict(), "test_accuracy": judge.test_accuracy,
               "mu_test": judge.mu_test, "sigma_test": judge.sigma_test}, filename)
        made.append(f"{filename}: test accuracy {judge.test_accuracy:.2%} ({time.perf_counter() - start:.0f} s)")
    return made


def make_autoencoders() -> list[str]:
    from course.lab.autoencoder import AEConfig, train_autoencoder

    made = []
    for kl_weight in AE_KL_WEIGHTS:
        config = AEConfig(size=32, kl_weight=kl_weight, steps=800)
        model, history = train_autoencoder(config, progress=False)
        filename = f"autoencoder-{config.key()}.pt"
        _save({"config": asdict(config), "state_dict": model.state_dict(), "history": history}, filename)
        made.append(f"{filename}: kl_weight {kl_weight:g}, final MSE {history['mse'][-1]:.4f} "
                    f"({history['seconds']:.0f} s)")
    return made


def main() -> int:
    for line in make_judges() + make_autoencoders():
        print(line, flush=True)
    print(f"written to {SHIPPED_WEIGHTS}")
    return 0
