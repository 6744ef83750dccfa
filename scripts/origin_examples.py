"""Run each example of docs/stability.md's "Where it broke", and write what the run said.

    python scripts/origin_examples.py            # TensorFlow; KERAS_BACKEND=jax or torch for another

Trains each case of `CASES` (tests/test_origin.py trains the same ones on every
backend) in a temporary directory, keeps each run's `nonfinite_origin` from
metrics.json, writes them to docs/origins.json and the block between the
markers in docs/stability.md, with the backend, the CPU and the date.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAGE, DATA = ROOT / "docs" / "stability.md", ROOT / "docs" / "origins.json"
BEGIN, END = "<!-- origin examples: scripts/origin_examples.py -->", "<!-- end of origin examples -->"
SMALL = ["model=mlp", "data.max_train_examples=320", "trainer.batch_size=32", "trainer.epochs=1", "trainer.verbose=0"]
# Each case: what it shows, its overrides, and the kinds of origin it may give (the first named is the usual).
CASES = {
    "loss": ("the naive formula under logits x300", ["loss=naive", "stress=logits_x300"], ("loss",)),
    "overflow": ("float16 logits scaled past 65,504 (mixed_float16, the head left in float16)",
                 ["trainer.precision=mixed_float16", "stress.unsafe_head_dtype=true", "stress.logit_scale=100000"],
                 ("activation",)),
    "gradient": ("a model of yours that takes the square root of units initialised to 0: finite, its gradient not",
                 ["model._target_=scripts.origin_examples.sqrt_features"], ("gradient",)),
    "blow_up": ("a learning rate that blows the weights up within a few steps (SGD, 1e10)",
                ["optimizer=sgd", "optimizer.learning_rate=1e10"], ("activation", "gradient")),
}


def sqrt_features(inputs, num_classes):
    """A model builder (docs/your_model.md) whose features are square roots of units that start at exactly 0
    (a zero-initialised Dense): the forward pass is finite (sqrt(0) = 0), the gradient of sqrt at 0 is not."""
    from keras import layers, ops

    x = layers.Dense(32, kernel_initializer="zeros")(layers.Flatten()(inputs))
    x = layers.Activation(ops.sqrt, name="sqrt")(x)
    return layers.Dense(num_classes, name="logits")(x)


def overrides(case: str) -> list[str]:
    return [*SMALL, *CASES[case][1]]


def run_case(case: str, run_dir: Path) -> dict:
    """Train one case; its metrics.json's figures that the page shows."""
    from keras_loss_recipes.recipes import train
    from keras_loss_recipes.config.compose import compose_train

    metrics = train.run(compose_train([*overrides(case), f"backend={os.environ.get('KERAS_BACKEND', 'tensorflow')}"]),
                        run_dir)
    return {"case": case, "shows": CASES[case][0], "overrides": overrides(case), "status": metrics["status"],
            "first_nonfinite": metrics["first_nonfinite"], "origin": metrics["nonfinite_origin"]}


def render(data: dict) -> str:
    """The block of docs/stability.md: each case's command and the line its run logged."""
    env = data["environment"]
    lines = [BEGIN, f"Each case below ran once ({env['backend']}, {env['cores']} cores of {env['cpu']}, {env['date']}); "
             "the line is the one the run logged, and `nonfinite_origin` in its metrics.json holds the same "
             "with its figures. The diagnosis took the time in brackets, once, after the epoch.", ""]
    for example in data["examples"]:
        origin = example["origin"]
        lines += [f"* **{origin['kind']}**: {example['shows']}: `python train.py {' '.join(example['overrides'])}`",
                  "", "  ```", f"  {origin['text']}  ({origin['seconds']:.2f} s)", "  ```", ""]
    lines.append(END)
    return "\n".join(lines)


def write_page(data: dict) -> None:
    page = PAGE.read_text()
    if BEGIN not in page or END not in page:
        raise SystemExit(f"{PAGE}: the markers {BEGIN} ... {END} are missing")
    before, rest = page.split(BEGIN, 1)
    PAGE.write_text(before + render(data) + rest.split(END, 1)[1])


def main() -> None:
    from keras_loss_recipes.runtime.backends import activate_backend, cpu_name

    backend = os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    activate_backend(backend)
    examples = []
    with tempfile.TemporaryDirectory(prefix="origin-examples-") as scratch:
        for case in CASES:
            print(f"running {case}: {' '.join(overrides(case))}", file=sys.stderr, flush=True)
            examples.append(run_case(case, Path(scratch) / case))
    data = {"environment": {"backend": backend, "cpu": cpu_name(), "cores": os.cpu_count(),
                            "date": time.strftime("%Y-%m-%d"), "command": "python scripts/origin_examples.py"},
            "examples": examples}
    DATA.write_text(json.dumps(data, indent=1) + "\n")
    write_page(data)
    print(f"wrote {DATA.relative_to(ROOT)} and the block of {PAGE.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
