"""Run the findings' whole measurement matrix; write every number and figure the docs show.

    python scripts/findings.py                 # the full matrix (about 20-30 minutes on 2 CPU cores)
    python scripts/findings.py --quick         # the same code on a tiny scale (about a minute)
    python scripts/findings.py --backends tensorflow,jax

It answers "which loss formulation should I use, and what goes wrong with the
others, on my backend and precision?". Per Keras backend (one child process
each, this script again with --worker: Keras picks its backend once per process;
keras_loss_recipes.runtime.workers runs them), in this order:
    paths      the loss path of every formulation, per precision, with the
               recipe's float32 head and with an unsafe low-precision head
    ordinary   every formulation, no stress, several seeds (mean +- std)
    stress     every formulation under the stability stress (logits x300)
    smoothed   `from_logits` with label smoothing, without and under stress: does it
               change the calibration (the temperature every run fits at its end)?
    sigmoid    the sigmoid family (task=binary on scikit-learn's breast cancer table), without
               and under stress: the same trap as the softmax's, one logit per example
    precision  a few formulations under stress in mixed_float16 and mixed_bfloat16
    probe      loss error and gradient against the logit gap, per dtype
    default    `python train.py` itself (TensorFlow only)
Writes (full run): docs/findings.md, docs/findings.json, docs/img/findings_*.png,
and the block of README.md between its findings markers; the runs, their
TensorBoard logs and the figures as TensorBoard images stay under
runs/findings/<time>/. The quick run writes all of it into its own directory.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from keras_loss_recipes import losses  # noqa: E402
from keras_loss_recipes.findings.data import build_findings  # noqa: E402
from keras_loss_recipes.findings.figures import write_figures  # noqa: E402
from keras_loss_recipes.findings.page import (  # noqa: E402
    README_BEGIN, README_END, json_text, render_page, render_readme_block,
)
from keras_loss_recipes.reporting.calibration import CALIBRATION_KEYS  # noqa: E402
from keras_loss_recipes.reporting.generated import environment, replace_readme_block  # noqa: E402
from keras_loss_recipes.runtime import workers  # noqa: E402
from keras_loss_recipes.runtime.backends import BACKENDS  # noqa: E402

COMMAND = "python scripts/findings.py"
STRESSED = ("softmax_ce", "sparse_from_logits", "clipped_probs", "naive")  # the precision rows, and --quick's
SMOOTHED, LABEL_SMOOTHING = ("from_logits",), 0.1  # smoothing needs one-hot labels: the Keras loss that takes them
# --quick: batches of 100 divide its 300 training and the 500 validation and test images, so JAX compiles
# each step once per run, not twice for a smaller last batch (the quick figures are checked only for the claims).
TINY = ["model=mlp", "data.max_train_examples=300", "trainer.epochs=2", "trainer.batch_size=100"]
# The sigmoid family's runs: a binary task on a real table of features (398 training rows), the mlp in small batches.
SIGMOID_BASE = ["task=binary", "data=breast_cancer", "model=mlp", "trainer.batch_size=16"]
SIGMOID_GROUPS = {"sigmoid": "stress=none", "sigmoid_stress": "stress=logits_x300"}  # group -> its stress
# Rough seconds per job kind on 2 CPU cores, for the first ETA (then the measured pace takes over).
RESULTS_FILE = "results.json"  # the raw results, in the run's directory
ESTIMATE_S = {"paths": 30, "train": 6, "probe": 40, "default": 45}


def formulations_on(backend: str, names=None) -> list[str]:
    """`names` (default: every formulation the training recipe trains, the multiclass task's) that run on `backend`."""
    names = names or losses.names(losses.TASK_FAMILIES[losses.MULTICLASS])
    return [n for n in names if backend in losses.formulation(n).backends]


def matrix(quick: bool) -> dict:
    """What the matrix holds: the base overrides, seeds, precisions and probe; the page quotes it."""
    return {
        "base": [*TINY] if quick else ["experiment=stability_stress"],
        # None: every formulation the backend runs. Quick: what its claims need, fewer off TensorFlow.
        "losses": list(STRESSED) if quick else None,
        "other_backend_losses": list(STRESSED[:2]) if quick else None,
        "seeds": {"ordinary": [] if quick else [0, 1, 2], "stress": [0] if quick else [0, 1]},
        "path_precisions": ["float32", "mixed_float16"] if quick else ["float32", "mixed_float16", "mixed_bfloat16"],
        "safe_head_paths_in_mixed": not quick,  # quick: in mixed precision only the unsafe head (its claim)
        "precisions": [] if quick else ["mixed_float16", "mixed_bfloat16"],
        "precision_losses": [] if quick else list(STRESSED),
        "probe": ["recipe=probe", "recipe.points=21", "recipe.dtypes=[float32,float16]"] if quick else ["recipe=probe"],
        "probe_backends": ["tensorflow"] if quick else list(BACKENDS),
        "default": not quick,
        # The ordinary and stress runs of these formulations again, with label smoothing (their seeds).
        "smoothed_losses": [] if quick else list(SMOOTHED),
        "label_smoothing": LABEL_SMOOTHING,
        # The sigmoid family (None: every one the backend runs). Quick: two, under stress, on TensorFlow only.
        "sigmoid_base": [*SIGMOID_BASE, "trainer.epochs=2"] if quick else list(SIGMOID_BASE),
        "sigmoid_losses": ["sigmoid_bce", "bce_from_logits"] if quick else None,
        "sigmoid_seeds": {"sigmoid": [] if quick else [0, 1], "sigmoid_stress": [0] if quick else [0, 1]},
        "sigmoid_backends": ["tensorflow"] if quick else list(BACKENDS),
    }


def plan(backend: str, quick: bool) -> list[dict]:
    """The jobs of one backend, in order."""
    m = matrix(quick)
    names = m["losses"] if backend == "tensorflow" else m["other_backend_losses"] or m["losses"]
    sigmoid = (m["sigmoid_losses"] or losses.names("sigmoid")) if backend in m["sigmoid_backends"] else []
    jobs = [{"kind": "paths", "group": "paths", "name": "paths", "precisions": m["path_precisions"],
             "losses": [*(names or formulations_on(backend)), *sigmoid],
             "safe_head_in_mixed": m["safe_head_paths_in_mixed"]}]
    for group, stress in (("ordinary", "stress=none"), ("stress", "stress=logits_x300")):
        for name in formulations_on(backend, names):
            for seed in m["seeds"][group]:
                jobs.append(_train_job(group, name, seed, "float32", False, [*m["base"], stress]))
        for name in [n for n in m.get("smoothed_losses", []) if backend in losses.formulation(n).backends]:
            for seed in m["seeds"][group]:
                jobs.append(_train_job(f"{group}_smoothed", name, seed, "float32", False, [*m["base"], stress],
                                       m["label_smoothing"]))
    if backend in m["sigmoid_backends"]:
        for group, stress in SIGMOID_GROUPS.items():
            for name in formulations_on(backend, m["sigmoid_losses"] or losses.names("sigmoid")):
                for seed in m["sigmoid_seeds"][group]:
                    jobs.append(_train_job(group, name, seed, "float32", False, [*m["sigmoid_base"], stress]))
    for precision in m["precisions"]:
        stressed = [*m["base"], "stress=logits_x300"]
        for name in formulations_on(backend, m["precision_losses"]):
            jobs.append(_train_job("precision", name, 0, precision, False, stressed))
        jobs.append(_train_job("precision", "softmax_ce", 0, precision, True, stressed))
    if backend in m["probe_backends"]:
        jobs.append({"kind": "probe", "group": "probe", "name": "probe", "overrides": m["probe"]})
    if backend == "tensorflow" and m["default"]:
        jobs.append({"kind": "default", "group": "default", "name": "default", "overrides": [],
                     "loss": "sparse_from_logits", "seed": 0, "precision": "float32", "unsafe_head": False})
    return jobs


def left_out(quick: bool) -> list[str]:
    """What the matrix skips on purpose, in words (the page lists it)."""
    if quick:
        return ["quick mode: a few formulations (fewer off TensorFlow), one seed, a tiny training set, stress "
                "only; the sigmoid family's two on TensorFlow; the probe on TensorFlow only; no mixed-precision training, no default recipe; "
                "run without --quick for the findings"]
    return [
        "mixed-precision training only for the formulations of the precision table (the others take the same "
        "paths as one of them, see the path table), with one seed",
        "an unsafe low-precision head only for formulations with a softmax head (a logits head has no softmax)",
        "the tf.nn formulations on JAX and PyTorch: they are TensorFlow ops",
        "the default recipe (the convnet, `python train.py`) on TensorFlow only; the matrix trains the "
        "stability_stress preset's MLP, which is what makes the matrix fit the time budget",
        "GPUs: none on this machine (docs/gpu.md)",
    ]


def _train_job(group, name, seed, precision, unsafe_head, overrides, label_smoothing=0.0) -> dict:
    label = f"{name}_seed{seed}_{precision}" + ("_unsafe_head" if unsafe_head else "")
    smoothing = [f"loss.label_smoothing={label_smoothing}"] if label_smoothing else []
    return {"kind": "train", "group": group, "name": label, "loss": name, "seed": seed, "precision": precision,
            "unsafe_head": unsafe_head, "label_smoothing": label_smoothing,
            "overrides": [*overrides, f"loss={name}", f"seed={seed}", f"trainer.precision={precision}",
                          f"stress.unsafe_head_dtype={str(unsafe_head).lower()}", *smoothing]}


# --- the parent: one child process per backend, progress and ETA ---------------------------


def run_all(backends: list[str], quick: bool, out: Path) -> list[dict]:
    """Every backend's jobs; returns their results (one dict per job).

    The quick run starts the backends' workers side by side (its point is speed);
    the full run one after another, so that no job's timing is another's load.
    """
    plans = {b: plan(b, quick) for b in backends}
    total = sum(len(jobs) for jobs in plans.values())
    budget = sum(ESTIMATE_S[job["kind"]] for jobs in plans.values() for job in jobs)
    print(f"findings: {total} jobs on {', '.join(backends)}; first estimate {budget / 60:.0f} min", flush=True)
    progress = Progress(total, budget)
    by_backend = workers.each_backend(backends, lambda b: run_backend(b, plans[b], out, progress), side_by_side=quick)
    return [r for b in backends for r in by_backend[b]]


class Progress:
    """One line per finished job: count, what it was, its outcome, elapsed time and an ETA."""

    def __init__(self, total: int, budget_s: float):
        import threading

        self.total, self.budget_s, self.done, self.done_estimate = total, budget_s, 0, 0.0
        self.started = time.time()
        self.lock = threading.Lock()

    def job_done(self, job: dict, result: dict) -> None:
        with self.lock:
            self._report(job, result)

    def _report(self, job: dict, result: dict) -> None:
        self.done += 1
        self.done_estimate += ESTIMATE_S[job["kind"]]
        elapsed = time.time() - self.started
        pace = elapsed / self.done_estimate if self.done_estimate else 1.0
        eta = max(0.0, (self.budget_s - self.done_estimate) * pace)
        outcome = result.get("status", "?")
        if result.get("loss_path"):
            outcome += f" {result['loss_path']}"
        if isinstance(result.get("test_accuracy"), float):
            outcome += f" acc={result['test_accuracy']:.3f}"
        print(f"[{self.done:3d}/{self.total}] {job['backend']:10s} {job['group']:9s} {job['name']:44s} "
              f"{outcome:40s} {result.get('seconds', 0):5.1f}s  elapsed {_clock(elapsed)}  ETA {_clock(eta)}",
              flush=True)


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def run_backend(backend: str, jobs: list[dict], out: Path, progress: Progress) -> list[dict]:
    """Run `jobs` in a child process on `backend`, reporting each as it finishes."""
    plan_file = out / f"plan-{backend}.json"
    plan_file.write_text(json.dumps(jobs, indent=1))
    results = []

    def arrived(result: dict) -> None:
        job = {**jobs[len(results)], "backend": backend}
        results.append({**job, **result})
        progress.job_done(job, result)

    worker = workers.Worker(backend, [str(Path(__file__).resolve()), "--worker", backend, "--plan", str(plan_file),
                                      "--out", str(out)], out / f"worker-{backend}.log")
    workers.run(worker, on_result=arrived)
    return results


# --- the child: jobs of one backend, in this process ----------------------------------------


def worker(backend: str, plan_file: Path, out: Path) -> None:
    from keras_loss_recipes.runtime.backends import activate_backend

    activate_backend(backend)
    for job in json.loads(Path(plan_file).read_text()):
        began = time.perf_counter()
        try:
            result = WORKER_JOBS[job["kind"]](job, out / "runs" / backend / job["group"] / job["name"])
        except Exception as err:  # one failed job is a finding too; the matrix goes on
            traceback.print_exc()
            result = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        result["seconds"] = round(time.perf_counter() - began, 2)
        workers.report(result)


def compose(overrides: list[str]):
    from keras_loss_recipes.config.compose import compose_train

    return compose_train([*overrides, "trainer.verbose=0", f"backend={os.environ['KERAS_BACKEND']}"])


def train_job(job: dict, run_dir: Path) -> dict:
    from keras_loss_recipes.recipes import train

    m = train.run(compose(job["overrides"]), run_dir)
    keep = ("status", "loss_path", "val_accuracy", "test_accuracy", "test_exact_ce", "test_loss", *CALIBRATION_KEYS,
            "first_nonfinite", "nonfinite_steps", "epochs_completed", "wall_s", "train_examples", "stability")
    origin = m.get("nonfinite_origin")
    return {**{k: m.get(k) for k in keep}, "nonfinite_origin": origin and {k: origin.get(k) for k in ORIGIN_KEPT}}


ORIGIN_KEPT = ("epoch", "step", "kind", "where", "text", "seconds")


def probe_job(job: dict, run_dir: Path) -> dict:
    from keras_loss_recipes.recipes import probe

    metrics = probe.run(compose(job["overrides"]), run_dir)
    return {"status": metrics["status"], "failures": metrics["failures"], "png": str(run_dir / "probe.png")}


def paths_job(job: dict, run_dir: Path) -> dict:
    """The loss path of every formulation the recipe would build, per precision and head dtype."""
    from keras_loss_recipes.runtime.session import fresh_session, precision_policy
    from keras_loss_recipes.config.settings import validate
    from keras_loss_recipes.training.network import build_network, measure_loss_path

    rows = []
    for precision in job["precisions"]:
        heads = (False,) if precision == "float32" else (False, True) if job["safe_head_in_mixed"] else (True,)
        for unsafe in heads:
            for name in formulations_on(os.environ["KERAS_BACKEND"], job["losses"]):
                if unsafe and losses.formulation(name).head != "softmax":
                    continue  # an unsafe head dtype changes only a softmax head
                binary = losses.formulation(name).family == "sigmoid"  # one logit, task=binary
                cfg = compose(["model=mlp", "model.hidden_units=8", f"loss={name}", *(["task=binary"] if binary else []),
                               f"trainer.precision={precision}", f"stress.unsafe_head_dtype={str(unsafe).lower()}"])
                setup = validate(cfg)
                fresh_session()
                with precision_policy(precision):
                    model, _, _ = build_network(cfg, setup, (28, 28, 1), 1 if binary else 10)
                    model.compile(loss=setup.make_loss())
                    path = measure_loss_path(model, setup).path
                rows.append({"loss": name, "precision": precision, "unsafe_head": unsafe, "path": path})
    return {"status": "ok", "paths": rows}


WORKER_JOBS = {"train": train_job, "default": train_job, "probe": probe_job, "paths": paths_job}


# --- the command ----------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny scale of the same matrix (about a minute)")
    parser.add_argument("--backends", help="comma-separated (default: every installed one of tensorflow, jax, torch)")
    parser.add_argument("--out", type=Path, help="where the runs go (default runs/findings/<time>[-quick])")
    parser.add_argument("--docs", type=Path, help="where the page, JSON and figures go "
                                                  "(default: docs/ for a full run, the --out directory for --quick)")
    parser.add_argument("--render", type=Path, metavar="OUT",
                        help="write the docs again from the results an earlier run kept in OUT (no training)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--plan", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def chosen_backends(spec: str | None) -> tuple[list[str], list[str]]:
    """(backends to run, notes on what is left out); an unknown or missing requested one is an error."""
    installed = [b for b in BACKENDS if importlib.util.find_spec(b) is not None]
    if spec is None:
        return installed, [f"backend {b}: not installed here" for b in BACKENDS if b not in installed]
    asked = [b.strip() for b in spec.split(",") if b.strip()]
    for b in asked:
        if b not in BACKENDS:
            raise ValueError(f"--backends {b}: valid choices: {', '.join(BACKENDS)}")
        if b not in installed:
            raise ValueError(f"--backends {b}: the {b} package is not installed")
    return asked, [f"backend {b}: not asked for" for b in BACKENDS if b not in asked]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args.worker, args.plan, args.out)
        return 0
    try:
        backends, skipped = chosen_backends(args.backends)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.render:
        if not (args.render / RESULTS_FILE).is_file():
            print(f"error: --render {args.render}: no {RESULTS_FILE} there (a findings run's directory keeps one)",
                  file=sys.stderr)
            return 2
        saved = json.loads((args.render / RESULTS_FILE).read_text())
        out, quick = args.render, saved["env"]["quick"]
    else:
        out = args.out or ROOT / "runs" / "findings" / (time.strftime("%Y-%m-%d_%H-%M-%S") + ("-quick" if args.quick else ""))
        quick = args.quick
        saved = run_and_save(backends, skipped, quick, out, argv)
    docs = args.docs or (out if quick else ROOT / "docs")
    written = write_findings(saved["results"], saved["env"], saved["matrix"], out, docs,
                             readme=None if quick or args.docs else ROOT / "README.md")
    print("wrote " + ", ".join(str(p) for p in written) + f"; TensorBoard: tensorboard --logdir {out}")
    return 0


def run_and_save(backends: list[str], skipped: list[str], quick: bool, out: Path, argv) -> dict:
    """Run the matrix; keep its raw results in `out`, so the docs can be rendered again (--render)."""
    out.mkdir(parents=True, exist_ok=True)
    began = time.time()
    try:
        results = run_all(backends, quick, out)
    except workers.WorkerFailed as err:
        raise SystemExit(f"error: {err}") from None
    command = " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])])
    saved = {"results": results, "matrix": matrix(quick),
             "env": environment(command, time.time() - began, quick, [*left_out(quick), *skipped])}
    (out / RESULTS_FILE).write_text(json.dumps(saved, default=str))
    return saved


def write_findings(results: list[dict], env: dict, plan_matrix: dict, out: Path, docs: Path,
                   readme: Path | None) -> list[Path]:
    """findings.json, the figures, findings.md (and the README block) from the results of the matrix."""
    findings = build_findings(results, env)
    findings["matrix"] = plan_matrix
    text = json_text(findings)
    findings = json.loads(text)  # render from exactly what the JSON holds, as the tests do
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "findings.json").write_text(text)
    figures = write_figures(findings, out, docs / "img")
    (docs / "findings.md").write_text(render_page(findings))
    written = [docs / "findings.json", docs / "findings.md", *figures]
    if readme is not None:
        replace_readme_block(readme, render_readme_block(findings), README_BEGIN, README_END)
        written.append(readme)
    return written


if __name__ == "__main__":
    raise SystemExit(main())
