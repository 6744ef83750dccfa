"""The findings as data: the matrix's results summed up into findings.json, and the claims the docs make.

Every number the findings page and the README's findings block show is in the
JSON this module builds; the claims are the qualitative statements (rescued
here, clipped there, diverges under stress, ...) as measured booleans, so the
page's prose and the tests read the same facts.
"""
from __future__ import annotations

import math

from keras_loss_recipes import losses
from keras_loss_recipes.reporting.calibration import CALIBRATION_KEYS, at_bound
from keras_loss_recipes.reporting.spread import mean_std

CLAIM_RATIO = 3.0  # "far above": more than three times the exact CE of the logits path
AGREE_ACCURACY = 0.02  # "the same accuracy": the means of the sound formulations lie this close
SAME_RTOL = 1e-3  # "trains identically": the same mean exact CE to this relative tolerance
# The groups of the calibration table: (group, its smoothed twin), each the same training but for label smoothing.
CALIBRATION_GROUPS = (("ordinary", "ordinary_smoothed"), ("stress", "stress_smoothed"))


def _mean_std(values) -> list[float] | None:
    """[mean, std] of the finite values (as the sweep report computes them), None if there are none."""
    mean, std = mean_std(list(values))
    return None if mean is None else [mean, std]


def summarize_runs(runs: list[dict]) -> list[dict]:
    """One row per (group, backend, precision, head, formulation): counts, and means +- std over the ok seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["group"], r["backend"], r["precision"], r["unsafe_head"], r["loss"],
                           r.get("label_smoothing") or 0.0), []).append(r)
    rows = []
    for (group, backend, precision, unsafe, loss, smoothing), members in groups.items():
        ok = [r for r in members if r["status"] == "ok"]
        firsts = [r["first_nonfinite"]["step"] for r in members if r.get("first_nonfinite")]
        rows.append({
            "group": group, "backend": backend, "precision": precision, "unsafe_head": unsafe, "loss": loss,
            "label_smoothing": smoothing,
            "runs": len(members), "ok": len(ok), "diverged": sum(r["status"] == "diverged" for r in members),
            "failed": sum(r["status"] == "failed" for r in members),
            "loss_path": "/".join(sorted({r["loss_path"] for r in members if r.get("loss_path")})) or None,
            "test_accuracy": _mean_std(r["test_accuracy"] for r in ok),
            "test_exact_ce": _mean_std(r["test_exact_ce"] for r in ok),
            "first_nonfinite_step": min(firsts) if firsts else None,
            # Where each diverging run's first NaN/inf began (keras_loss_recipes/training/nonfinite_origin.py), each told once.
            "origins": sorted({r["nonfinite_origin"]["where"] for r in members if r.get("nonfinite_origin")}),
            "saturated_frac": _mean_std((r.get("stability") or {}).get("stability/saturated_frac") for r in ok),
            "logit_grad_norm": _mean_std((r.get("stability") or {}).get("stability/logit_grad_norm") for r in ok),
            **{key: _mean_std(r.get(key) for r in ok) for key in CALIBRATION_KEYS},
            "confidence": confidence_of([r.get("temperature") for r in ok]),
        })
    return rows


def confidence_of(temperatures: list) -> str | None:
    """What the temperatures fitted over seeds say together: over-confident when every one is above 1 (T
    softens the softmax), under-confident when every one is below, mixed otherwise; None without any."""
    fitted = [t for t in temperatures if t is not None and math.isfinite(t)]
    if not fitted:
        return None
    return "over-confident" if min(fitted) > 1 else "under-confident" if max(fitted) < 1 else "mixed"


def group_label(g: dict) -> str:
    """A summary row's formulation, with its precision, head and label smoothing where they are not the default."""
    smoothing = f" (label smoothing {g['label_smoothing']:g})" if g.get("label_smoothing") else ""
    if g["precision"] == "float32":
        return g["loss"] + smoothing
    return f"{g['loss']} ({g['precision']}" + (", unsafe head)" if g["unsafe_head"] else ")") + smoothing


def find(rows: list[dict], **match) -> dict | None:
    """The one row whose fields equal `match`, if any."""
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    return found[0] if found else None


def path_of(paths: list[dict], backend: str, loss: str, precision="float32", unsafe_head=False) -> str | None:
    row = find(paths, backend=backend, loss=loss, precision=precision, unsafe_head=unsafe_head)
    return row["path"] if row else None


def _mean(row: dict | None, key: str) -> float | None:
    return row[key][0] if row and row.get(key) else None


def backend_claims(backend: str, paths: list[dict], groups: list[dict]) -> dict:
    """The qualitative statements of the page, as measured on `backend` (None: not measured)."""
    def stress(loss):
        return find(groups, group="stress", backend=backend, loss=loss, precision="float32", unsafe_head=False)

    logits_ce, clipped_ce = _mean(stress("sparse_from_logits"), "test_exact_ce"), _mean(stress("clipped_probs"), "test_exact_ce")
    softmax_ce = _mean(stress("softmax_ce"), "test_exact_ce")
    naive = stress("naive")
    unsafe = path_of(paths, backend, "softmax_ce", "mixed_float16", True)
    return {
        "softmax_ce_path": path_of(paths, backend, "softmax_ce"),
        "softmax_ce_exact": path_of(paths, backend, "softmax_ce") in losses.EXACT_PATHS
        if path_of(paths, backend, "softmax_ce") else None,
        "unsafe_float16_head_clips_softmax_ce": None if unsafe is None else unsafe == "clipped_probabilities",
        "clipped_far_above_logits_under_stress": None if None in (logits_ce, clipped_ce)
        else clipped_ce > CLAIM_RATIO * logits_ce,
        "softmax_ce_like_logits_under_stress": None if None in (logits_ce, softmax_ce)
        else math.isclose(softmax_ce, logits_ce, rel_tol=SAME_RTOL),
        "softmax_ce_far_above_logits_under_stress": None if None in (logits_ce, softmax_ce)
        else softmax_ce > CLAIM_RATIO * logits_ce,
        "naive_diverges_under_stress": None if naive is None else naive["diverged"] == naive["runs"],
        "sound_formulations_agree_without_stress": _sound_agree(groups, backend),
        "always_exact": sorted(n for n in losses.names() if _exact_everywhere(paths, backend, n)),
        **calibration_claims(backend, groups),
        **sigmoid_claims(backend, groups),
    }


def sigmoid_claims(backend: str, groups: list[dict]) -> dict:
    """The sigmoid family under stress on `backend`: the path a sigmoid head with BinaryCrossentropy() takes,
    and whether its exact CE is far above, or the same as, the logits formulation's (None: not measured)."""
    def stress(loss):
        return find(groups, group="sigmoid_stress", backend=backend, loss=loss)

    logits_ce, sigmoid_ce = _mean(stress("bce_from_logits"), "test_exact_ce"), _mean(stress("sigmoid_bce"), "test_exact_ce")
    measured = None not in (logits_ce, sigmoid_ce)
    return {
        "sigmoid_bce_path": (stress("sigmoid_bce") or {}).get("loss_path"),
        "sigmoid_bce_far_above_logits_under_stress": sigmoid_ce > CLAIM_RATIO * logits_ce if measured else None,
        "sigmoid_bce_like_logits_under_stress": math.isclose(sigmoid_ce, logits_ce, rel_tol=SAME_RTOL)
        if measured else None,
    }


def calibration_claims(backend: str, groups: list[dict]) -> dict:
    """Per training condition (no stress, stress), the formulations the fitted T finds over- and
    under-confident, and what label smoothing does to each smoothed formulation (`smoothing_effect`)."""
    claims = {}
    for plain, smoothed in CALIBRATION_GROUPS:
        rows = [g for g in groups if g["group"] == plain and g["backend"] == backend and g["precision"] == "float32"]
        claims[f"confidence_{plain}"] = {word: sorted(g["loss"] for g in rows if g.get("confidence") == word)
                                         for word in ("over-confident", "under-confident", "mixed")}
        claims[f"at_bound_{plain}"] = sorted(g["loss"] for g in rows if g.get("temperature")
                                             and at_bound(g["temperature"][0]))
        claims[f"smoothing_{plain}"] = {g["loss"]: smoothing_effect(find(rows, loss=g["loss"]), g)
                                        for g in groups if g["group"] == smoothed and g["backend"] == backend}
    return claims


def smoothing_effect(without: dict | None, smoothed: dict) -> dict:
    """The same formulation without and with label smoothing: what T says of each, whether T is lower with it
    (the model less sure of itself), and whether its test ECE is higher before scaling and lower after."""
    def higher(key):
        a, b = _mean(without, key), _mean(smoothed, key)
        return None if None in (a, b) else b > a

    lower_t, lower_after = higher("temperature"), higher("test_ece_calibrated")
    bound = [bool(g and g.get("temperature") and at_bound(g["temperature"][0])) for g in (without, smoothed)]
    return {"without": (without or {}).get("confidence"), "with": smoothed.get("confidence"),
            "at_bound_without": bound[0], "at_bound_with": bound[1],
            "t_lower": None if lower_t is None else not lower_t, "ece_before_higher": higher("test_ece"),
            "ece_after_lower": None if lower_after is None else not lower_after}


def _sound_agree(groups: list[dict], backend: str) -> bool | None:
    """Without stress, do the formulations that are no deliberate mistake reach the same mean test accuracy?"""
    means = [g["test_accuracy"][0] for g in groups if g["group"] == "ordinary" and g["backend"] == backend
             and g["test_accuracy"] and not losses.formulation(g["loss"]).is_mistake]
    return None if len(means) < 2 else max(means) - min(means) <= AGREE_ACCURACY


def _exact_everywhere(paths: list[dict], backend: str, loss: str) -> bool:
    rows = [r for r in paths if r["backend"] == backend and r["loss"] == loss]
    return bool(rows) and all(r["path"] in losses.EXACT_PATHS for r in rows)


def build_findings(results: list[dict], env: dict) -> dict:
    """findings.json: the environment, the paths, the runs, their summary, the probe and the claims."""
    paths = [{"backend": r["backend"], **row} for r in results if r["kind"] == "paths" for row in r.get("paths", [])]
    runs = [_run_record(r) for r in results if r["kind"] == "train"]
    default = next((_run_record(r) for r in results if r["kind"] == "default" and r["status"] != "failed"), None)
    probe = [{"backend": r["backend"], **f}
             for r in results if r["kind"] == "probe" for f in r.get("failures", [])]
    groups = summarize_runs(runs)
    backends = list(dict.fromkeys(r["backend"] for r in results))
    return {"environment": env, "backends": backends, "paths": paths, "groups": groups, "runs": runs,
            "probe": probe, "default": default,
            "claims": {b: backend_claims(b, paths, groups) for b in backends}}


def _run_record(r: dict) -> dict:
    keep = ("group", "backend", "loss", "label_smoothing", "seed", "precision", "unsafe_head", "status", "loss_path",
            "val_accuracy", "test_accuracy", "test_exact_ce", *CALIBRATION_KEYS, "first_nonfinite", "nonfinite_origin",
            "epochs_completed", "train_examples", "wall_s", "seconds", "stability")
    return {k: r.get(k) for k in keep}
