"""Every config group composes, and bad values are caught up front with a clear message."""
from pathlib import Path

import pytest

from recipes.runtime.errors import UserError
from recipes.settings import validate

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GROUPS = ["recipe", "data", "model", "loss", "optimizer", "trainer", "stress", "telemetry", "experiment"]


@pytest.mark.parametrize(
    "group, option",
    [(g, p.stem) for g in GROUPS for p in sorted((CONFIGS / g).glob("*.yaml"))],
)
def test_every_config_option_composes_and_validates(compose, group, option, tmp_path):
    overrides = [f"{group}={option}"]
    if option == "idx":
        overrides.append(f"data.dir={tmp_path}")
    cfg = compose(*overrides)
    setup = validate(cfg)
    if group == "loss":
        assert setup.name == option


def test_defaults_are_the_documented_ones(compose):
    cfg = compose()
    assert (cfg.data.name, cfg.model.name, cfg.loss.name, cfg.optimizer.name) == (
        "mnist_embedded", "cnn", "sparse_from_logits", "adam")
    assert cfg.seed == 0 and cfg.trainer.epochs >= 1


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.epochs=-1", "trainer.epochs=-1: must be an integer >= 1"),
        ("trainer.epochs=0", "trainer.epochs=0: must be an integer >= 1"),
        ("trainer.batch_size=0", "trainer.batch_size=0: must be an integer >= 1"),
        ("trainer.batch_size=abc", "trainer.batch_size='abc': must be an integer >= 1"),
        ("trainer.verbose=5", "trainer.verbose=5: valid choices: 0, 1, 2, auto"),
        ("optimizer.learning_rate=-0.1", "optimizer.learning_rate=-0.1: must be a finite number > 0"),
        ("optimizer=sgd optimizer.momentum=1.5", r"optimizer.momentum=1.5: must be in \[0, 1\)"),
        ("loss.temperature=0", "loss.temperature=0.0: must be a finite number > 0"),
        ("loss=from_logits loss.label_smoothing=1.2", r"loss.label_smoothing=1.2: must be in \[0, 1\)"),
        ("loss.label_smoothing=0.1", "loss.label_smoothing=0.1: 'sparse_from_logits' takes integer labels"),
        ("loss.name=nope", "loss.name: unknown loss formulation 'nope'; valid choices: softmax_ce"),
        ("model.name=resnet", "model.name='resnet': valid choices: cnn, mlp"),
        ("seed=-3", "seed=-3: must be an integer >= 0"),
        ("data.max_train_examples=0", "data.max_train_examples=0: must be an integer >= 1"),
        ("data.val_examples=3000 data.test_examples=2000", "must leave training examples"),
        ("data=idx", "data.dir is not set"),
        ("data=idx data.dir=/no/such/dir", "data.dir=/no/such/dir: directory does not exist"),
        ("data=mnist data.download=maybe", "data.download='maybe': valid choices: auto, true, false"),
        ("trainer.precision=float64", "trainer.precision='float64': valid choices: float32, mixed_float16"),
        ("trainer.on_nonfinite=ignore", "trainer.on_nonfinite='ignore': valid choices: stop, skip, continue"),
        ("stress.logit_scale=0", "stress.logit_scale=0: must be a finite number > 0"),
        ("stress.head_init_std=-1", "stress.head_init_std=-1: must be a finite number > 0"),
        ("telemetry.every_n_steps=0", "telemetry.every_n_steps=0: must be an integer >= 1"),
        ("trainer.device=tpu", "trainer.device='tpu': valid choices: auto, cpu, gpu"),
        ("trainer.distribution=horovod", "trainer.distribution='horovod': valid choices: none, mirrored"),
        ("trainer.distribution=mirrored trainer.on_nonfinite=skip", "on_nonfinite=skip does not work with trainer.distribution=mirrored"),
        ("trainer.jit_compile=maybe", "trainer.jit_compile='maybe': valid choices: auto, True, False"),
    ],
)
def test_bad_values_are_named_with_what_is_allowed(compose, override, message):
    cfg = compose(*override.split())
    with pytest.raises(UserError, match=message):
        validate(cfg)


def test_stability_stress_preset(compose):
    cfg = compose("experiment=stability_stress", "loss=clipped_probs")
    assert cfg.stress.logit_scale == 300 and cfg.model.name == "mlp"
    assert cfg.data.max_train_examples == 2000 and cfg.trainer.epochs == 5
    assert cfg.loss.name == "clipped_probs"


def readme_commands():
    """`python train.py ...` lines of the code blocks of README.md and docs/*.md (one command per line)."""
    pages = [CONFIGS.parent / "README.md", *sorted((CONFIGS.parent / "docs").glob("*.md"))]
    commands, in_block = [], False
    for line in (line for page in pages for line in page.read_text().splitlines()):
        if line.startswith("```"):
            in_block = not in_block
            continue
        if in_block and "python train.py" in line:
            args = line.split("python train.py", 1)[1].split("#", 1)[0].split()
            commands.append([a for a in args if a != "-m"])
    return commands


@pytest.mark.parametrize("args", readme_commands(), ids=lambda a: " ".join(a) or "(defaults)")
def test_every_readme_command_composes(compose, args):
    # Sweep lists (a,b,c) are Hydra's multirun syntax: compose each command with the first value;
    # <placeholders> stand for the user's own paths.
    import re

    args = [re.sub(r"<[^>]*>", "x", a) for a in args]
    first = [a.split("=", 1)[0] + "=" + a.split("=", 1)[1].split(",")[0] if "=" in a else a for a in args]
    cfg = compose(*first)
    if not any("checkpoint=" in a or "trainer.epochs=-1" in a for a in args):
        validate(cfg)


def test_readme_commands_were_found():
    assert len(readme_commands()) >= 8
