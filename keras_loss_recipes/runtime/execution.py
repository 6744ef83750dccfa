"""How many training steps Keras runs per call of its train function: `trainer.steps_per_execution`.

    trainer.steps_per_execution  auto | N >= 1    (passed to `compile(steps_per_execution=...)`)

With N > 1, TensorFlow runs N steps inside one compiled loop; JAX (in Keras
3.15) loops over the N steps on the host, so there only the calls into Keras
and the callbacks' batch hooks become rarer; PyTorch takes only 1. The figures do not
change: the same batches in the same order, the non-finite count kept step by
step on the device. `auto` is the value measured best for the backend and
device (benchmarks/gpu_proxy.py and benchmarks/throughput.py compare them).
"""
from __future__ import annotations

from keras_loss_recipes.runtime.errors import UserError

AUTO = "auto"
# (backend, device) -> steps per execution under `auto`, where more than 1 was measured faster. None yet: on
# this project's CPUs, 8 (JAX) and 4 or 16 (TensorFlow) came out within the machines' run-to-run noise
# against 1 (benchmarks/gpu_proxy.py, docs/performance.md); a GPU has not been measured with it.
MEASURED: dict = {}


ONE_STEP_BACKENDS = ("torch",)  # Keras 3.15's PyTorch trainer refuses more than one step per execution


def check(value, backend: str = "tensorflow") -> None:
    if not (value == AUTO or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)):
        raise UserError(f"trainer.steps_per_execution={value!r}: valid choices: auto, or a whole number >= 1")
    if value not in (AUTO, 1) and backend in ONE_STEP_BACKENDS:
        raise UserError(f"trainer.steps_per_execution={value}: Keras runs one step per execution on the {backend} "
                        "backend; valid choices there: auto, 1")


def steps_per_execution(value, backend: str, device: str, every_step: bool = False) -> int:
    """What to pass to compile(steps_per_execution=...) for `value` on `backend` and `device` ("cpu" | "gpu").
    `every_step`: the run asks for figures of every step (a progress bar, step figures), which Keras hands
    out once per execution: `auto` is then 1."""
    check(value, backend)
    if value == AUTO:
        return 1 if every_step else MEASURED.get((backend, device), 1)
    return int(value)
