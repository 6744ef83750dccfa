"""Where a run broke: the origin of its first NaN/inf, on every installed backend (tests/origin_driver.py).

Each backend in a child process of its own, TensorFlow included.
"""
import json

import pytest

from tests.conftest import ROOT, each_backend
from tests.test_backends import driver_result

BACKENDS = each_backend(seconds=40)


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_case_names_where_it_broke_and_a_finite_run_never_diagnoses(backend, tmp_path):
    out = driver_result("origin_driver", tmp_path, backend)

    for case in ("loss", "overflow", "gradient", "blow_up"):
        run = out[case]
        assert run["status"] == "diverged", (case, run)
        origin = run["origin"]
        # The step within its epoch that the run's guard found, diagnosed with the weights from before it.
        assert (origin["epoch"], origin["weights"]) == (run["first_nonfinite"]["epoch"], "from before the step")
        assert origin["step"] == run["first_nonfinite"]["step"]  # one epoch: the fit's step is the epoch's
        assert origin["text"].startswith(f"first {origin['value']} at epoch 1 step {origin['step']}: "), origin
        assert origin["text"] in run["summary"]  # the run's TensorBoard summary says it too
        assert origin["seconds"] >= 0

    # naive under logits x300: the loss, a probability that underflowed to 0, every activation finite.
    loss = out["loss"]["origin"]
    assert (loss["kind"], loss["loss"], loss["underflow"], loss["dtype"]) == ("loss", "naive", True, "float32")
    assert loss["logit_gap"] > 104  # float32's smallest subnormal is exp(-103.3): past it a probability is 0
    assert "the loss (naive: log of a probability that underflowed to 0 in float32 at logit gap" in loss["text"]
    assert loss["where"] == "loss (naive)"

    # mixed_float16 with the head left in float16, logits x 100000: the scaling layer overflowed float16.
    overflow = out["overflow"]["origin"]
    assert (overflow["kind"], overflow["layer"], overflow["class"], overflow["dtype"]) == (
        "activation", "logit_scale", "Rescaling", "float16")
    assert overflow["overflow"] and overflow["dtype_max"] == 65504.0 and overflow["value"] == "inf"
    assert 65504 / 100000 < overflow["input_max_abs"] < 65504  # finite input, finite logits: the scaling did it
    assert "it overflowed float16, whose largest finite value is 65,504" in overflow["text"]

    # sqrt after relu: every activation and the loss finite, the first layer's gradient NaN (0 x inf).
    gradient = out["gradient"]["origin"]
    assert (gradient["kind"], gradient["layer"], gradient["value"]) == ("gradient", "dense", "NaN")
    assert gradient["variable"].startswith("dense/") and gradient["layer_grad_norms"]["dense"] is None
    assert gradient["largest_norm_layer"] == "logits" and gradient["largest_norm"] > 0

    # A learning rate of 1e10: the weights grow for a step or two, then the first layer that overflows is named
    # (or, where every output stayed finite, the gradient that did).
    blow_up = out["blow_up"]["origin"]
    assert blow_up["step"] > 1 and blow_up["kind"] in ("activation", "gradient")
    if blow_up["kind"] == "activation":
        assert blow_up["overflow"] and blow_up["dtype"] == "float32" and blow_up["input_max_abs"] > 1e10

    # Under `continue` the weights from before the step are gone: the bad updates went in, so the first thing it
    # can still see is the weights themselves (on every backend), said with which weights it looked at. A
    # diagnosis that found nothing ("not reproduced", kind None) is a failure here.
    went_on = out["continue"]
    assert went_on["status"] == "ok" and went_on["origin"]["weights"] == "of epoch 1's end: continue applied its later steps"
    assert {key: went_on["origin"].get(key) for key in ("kind", "layer", "value")} == {
        "kind": "weights", "layer": "dense", "value": "NaN"}, went_on["origin"]
    assert "no longer visible" in went_on["origin"]["text"]

    # A run that stays finite records no origin, and never calls the diagnosis (it would have raised).
    assert out["finite"] == {"status": "ok", "origin": None, "nonfinite_steps": 0}


def test_the_examples_in_the_docs_are_what_the_generator_wrote():
    """docs/stability.md's examples are scripts/origin_examples.py's rendering of docs/origins.json, one per case,
    each of a kind its case may give."""
    from scripts import origin_examples

    data = json.loads((ROOT / "docs" / "origins.json").read_text())
    page = (ROOT / "docs" / "stability.md").read_text()
    assert origin_examples.render(data) in page
    assert [e["case"] for e in data["examples"]] == list(origin_examples.CASES)
    for example in data["examples"]:
        assert example["overrides"] == origin_examples.overrides(example["case"])
        assert example["origin"]["kind"] in origin_examples.CASES[example["case"]][2], example
    # The three kinds of docs/stability.md, each with a real example.
    assert {e["origin"]["kind"] for e in data["examples"]} >= {"activation", "loss", "gradient"}
