"""The sigmoid family's loss paths as the doctor measures them, per backend, with the loss of confidently wrong examples.

    python -m keras_loss_recipes.recipes.doctor.sigmoid_table     # every installed backend, a child process each

Each case is a head (a sigmoid unit, or a logit) and a `BinaryCrossentropy`: the sound ones, and the two
mistakes (from_logits=True on a sigmoid: a double sigmoid; from_logits forgotten on a logit). Per backend the
doctor's worker measures its path in float32 (`worker.measure`), and Keras's loss is computed for each of
three confidently wrong examples alone: logit 30 target 0, logit -30 target 1, logit 60 target 0, whose exact
binary cross entropy is 30, 30 and 60. The printed Markdown table names the registry's formulation of each
case and flags a measured path that differs from the path the registry expects.
"""
from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

from keras_loss_recipes.losses.formulations import formulation
from keras_loss_recipes.losses.keras_losses import KerasLoss
from keras_loss_recipes.losses.numerics import exact_binary_cross_entropy
from keras_loss_recipes.training.heads import Head

MODULE = "keras_loss_recipes.recipes.doctor.sigmoid_table"  # what a child runs
PRECISION = "float32"
EXAMPLES = ((30.0, 0.0), (-30.0, 1.0), (60.0, 0.0))  # (logit, target): each confidently wrong
# The registry's formulation of each case: (its head, the loss compiled on it).
CASES = {
    "sigmoid_bce": ("sigmoid", KerasLoss("BinaryCrossentropy")),
    "bce_from_logits": ("logits", KerasLoss("BinaryCrossentropy", from_logits=True)),
    "mistake_double_sigmoid": ("sigmoid", KerasLoss("BinaryCrossentropy", from_logits=True)),
    "mistake_bce_logits_as_probs": ("logits", KerasLoss("BinaryCrossentropy")),
}


def head(kind: str) -> dict:
    """A one-unit head of `kind` as the doctor reads one from a model (`training.heads.Head`)."""
    return dataclasses.asdict(Head(kind=kind, layer="head", layer_class="Activation", activation_in_layer=False,
                                   logits_from=None, width=1, dtype=PRECISION, pinned=False))


def measure_cases() -> list[dict]:
    """Every case on the current backend: the doctor's measurement and the loss of each example."""
    from keras_loss_recipes.losses.measure import compiled_loss
    from keras_loss_recipes.recipes.doctor.worker import head_layer, measure

    results = []
    for name, (kind, loss) in CASES.items():
        spec = {"head": head(kind), "loss": dataclasses.asdict(loss), "precisions": [PRECISION]}
        measured = measure(spec, PRECISION)
        layer, setup = head_layer(spec["head"], PRECISION), loss.setup(kind)
        losses = [compiled_loss(setup, [[z]], [[t]], head=layer) for z, t in EXAMPLES]
        results.append({"case": name, "head": kind, "loss": loss.code(), "path": measured["path"],
                        "exact": measured["exact"], "how": measured["how"], "losses": losses})
    return results


def table(by_backend: dict[str, list[dict]]) -> str:
    """Markdown: a row per case, a column per backend: the path and the examples' losses."""
    backends = list(by_backend)
    exact = ", ".join(f"{float(exact_binary_cross_entropy([[z]], [[t]])[0]):.4g}" for z, t in EXAMPLES)
    lines = [f"| `loss=` | head + loss | {' | '.join(backends)} |", "|---" * (len(backends) + 2) + "|",
             f"| exact (float64) | | {' | '.join([exact] * len(backends))} |"]
    for index, name in enumerate(CASES):
        cells = []
        for backend in backends:
            result = by_backend[backend][index]
            expected = formulation(name).expected_path(backend)
            flag = "" if result["path"] == expected else f" (the registry expects {expected})"
            values = ", ".join("NaN" if v != v else f"{v:.4g}" for v in result["losses"])
            cells.append(f"{result['path']}{flag}: {values}")
        first = by_backend[backends[0]][index]
        lines.append(f"| `{name}` | {first['head']} + `{first['loss']}` | {' | '.join(cells)} |")
    examples = ", ".join(f"logit {z:g} target {t:g}" for z, t in EXAMPLES)
    return "\n".join(lines) + f"\n\nLosses of three examples, each alone: {examples}; {PRECISION}.\n"


def main() -> None:
    from keras_loss_recipes.recipes.doctor.diagnosis import installed_backends
    from keras_loss_recipes.runtime.workers import Worker, each_backend
    from keras_loss_recipes.runtime.workers import run as run_worker

    with tempfile.TemporaryDirectory(prefix="sigmoid-table-") as scratch:
        def on(backend: str) -> list[dict]:
            worker = Worker(backend, ["-m", MODULE, "--child"], Path(scratch) / f"{backend}.log")
            return run_worker(worker)

        print(table(each_backend(installed_backends(), on, side_by_side=True)), end="")


def child() -> None:
    import os

    from keras_loss_recipes.runtime.backends import activate_backend
    from keras_loss_recipes.runtime.workers import report

    activate_backend(os.environ.get("KERAS_BACKEND", "tensorflow"))
    for result in measure_cases():
        report(result)


if __name__ == "__main__":
    child() if sys.argv[1:] == ["--child"] else main()
