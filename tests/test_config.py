"""Every config group composes, and bad values are caught up front with a clear message."""
import re
from pathlib import Path

import pytest
import yaml

from keras_loss_recipes import losses
from keras_loss_recipes.runtime.errors import UserError
from keras_loss_recipes.config.settings import validate

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DOCS = CONFIGS.parent / "docs" / "configuration.md"
GROUPS = ["recipe", "data", "model", "loss", "optimizer", "trainer", "stress", "telemetry", "experiment"]


# Options that need a partner in another group: feature tables an mlp (the default cnn takes images), the
# token model token ids.
TAKES_OTHER_INPUTS = {"csv": ["model=mlp"], "breast_cancer": ["model=mlp"], "wine": ["model=mlp"],
                      "embedding_bag": ["data=npz", "data.inputs=tokens"]}


@pytest.mark.parametrize(
    "group, option",
    [(g, p.stem) for g in GROUPS for p in sorted((CONFIGS / g).glob("*.yaml"))],
)
def test_every_config_option_composes_and_validates(compose, group, option, tmp_path):
    overrides = [f"{group}={option}"]
    if option in ("idx", "folder"):
        overrides.append(f"data.dir={tmp_path}")
    overrides += TAKES_OTHER_INPUTS.get(option, [])
    cfg = compose(*overrides)
    if group == "loss" and option in losses.names("sigmoid"):  # the recipes train multiclass classifiers only, yet
        with pytest.raises(UserError, match=f"^loss={option}: a sigmoid formulation .* cannot train a multiclass"):
            validate(cfg)
        return
    setup = validate(cfg)
    if group == "loss":
        assert setup.name == option


def documented_groups() -> dict[str, str]:
    """docs/configuration.md's table of config groups: `group=` -> its options cell."""
    rows = [line.strip("|").split("|") for line in DOCS.read_text().splitlines() if line.startswith("| `")]
    return {cells[0].strip().strip("`").rstrip("="): cells[1] for cells in rows}


def test_defaults_are_the_documented_ones(compose):
    cfg = compose()
    groups = documented_groups()
    defaults = {k: v for entry in yaml.safe_load((CONFIGS / "train.yaml").read_text())["defaults"]
                if isinstance(entry, dict) for k, v in entry.items()}
    # Each group's option marked "(default" in the docs is the one train.yaml picks.
    for group in ("data", "model", "optimizer", "stress", "telemetry", "recipe"):
        [marked] = re.findall(r"`(\w+)` \(default", groups[group])
        assert defaults[group] == marked, group
    assert defaults["trainer"] == "default"
    assert "default `sparse_from_logits`" in groups["loss"] and defaults["loss"] == cfg.loss.name == "sparse_from_logits"
    # The figures the docs give for the defaults are the composed config's.
    assert "`default` (15 epochs, batch 128)" in groups["trainer"]
    assert (cfg.trainer.epochs, cfg.trainer.batch_size) == (15, 128)
    assert "`quick` (2 epochs)" in groups["trainer"] and compose("trainer=quick").trainer.epochs == 2
    assert "`adam` (default, lr 1e-3)" in groups["optimizer"] and cfg.optimizer.learning_rate == 1e-3
    sgd = compose("optimizer=sgd").optimizer
    assert "`sgd` (lr 0.01, momentum 0.9)" in groups["optimizer"] and (sgd.learning_rate, sgd.momentum) == (0.01, 0.9)
    assert cfg.seed == 0 and cfg.telemetry.enabled is True and cfg.stress.logit_scale == 1.0
    # The README's quick start names the same defaults.
    readme = (CONFIGS.parent / "README.md").read_text()
    assert "(embedded MNIST, the keras.io convnet, `sparse_from_logits`, Adam, 15 epochs)" in readme
    assert (cfg.data.name, cfg.model.name, cfg.optimizer.name) == ("mnist_embedded", "cnn", "adam")


def test_the_docs_list_every_recipe_and_every_option_of_each_group():
    from keras_loss_recipes.recipes.registry import RECIPES

    groups = documented_groups()
    for group in GROUPS + ["hparams_search"]:
        if group == "loss":
            continue  # the README's tables list the formulations (tests/test_losses.py)
        missing = [p.stem for p in (CONFIGS / group).glob("*.yaml") if f"`{p.stem}`" not in groups[group]]
        assert not missing, f"{group}: {missing}"
    assert all(f"`{name}`" in groups["recipe"] for name in RECIPES)


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.epochs=-1", "trainer.epochs=-1: must be an integer >= 1"),
        ("trainer.epochs=0", "trainer.epochs=0: must be an integer >= 1"),
        ("trainer.batch_size=0", "trainer.batch_size=0: must be an integer >= 1"),
        ("trainer.verbose=5", "trainer.verbose=5: valid choices: 0, 1, 2, auto"),
        ("optimizer.learning_rate=-0.1", "optimizer.learning_rate=-0.1: must be a finite number > 0"),
        ("optimizer=sgd optimizer.momentum=1.5", r"optimizer.momentum=1.5: must be in \[0, 1\)"),
        ("loss.temperature=0", "loss.temperature=0.0: must be a finite number > 0"),
        ("loss=from_logits loss.label_smoothing=1.2", r"loss.label_smoothing=1.2: must be in \[0, 1\)"),
        ("loss.label_smoothing=0.1", "loss.label_smoothing=0.1: 'sparse_from_logits' takes integer labels"),
        ("loss.name=nope", "loss.name: unknown loss formulation 'nope'; valid choices: softmax_ce"),
        ("model._target_=resnet", "model._target_='resnet': name a callable as module.attribute"),
        ("model._target_=no_such_module.build", "model._target_=no_such_module.build: module 'no_such_module' not found"),
        ("seed=-3", "seed=-3: must be an integer >= 0"),
        ("data.max_train_examples=0", "data.max_train_examples=0: must be an integer >= 1"),
        ("data.val_examples=3000 data.test_examples=2000", "must leave training examples"),
        ("data=idx", "data.dir is not set"),
        ("data=idx data.val_examples=most", "data.val_examples='most': must be auto or an integer >= 1"),
        ("data.val_examples=auto", "data.val_examples='auto': must be an integer >= 1"),  # the embedded set's sizes are fixed
        ("data=idx data.dir=/no/such/dir", "data.dir=/no/such/dir: directory does not exist"),
        ("data=mnist data.download=maybe", "data.download='maybe': valid choices: auto, true, false"),
        ("trainer.precision=float64", "trainer.precision='float64': valid choices: float32, mixed_float16"),
        ("trainer.on_nonfinite=ignore", "trainer.on_nonfinite='ignore': valid choices: stop, skip, continue"),
        ("stress.logit_scale=0", "stress.logit_scale=0.0: must be a finite number > 0"),  # typed: a float
        ("stress.head_init_std=-1", "stress.head_init_std=-1.0: must be a finite number > 0"),
        ("telemetry.every_n_steps=0", "telemetry.every_n_steps=0: must be an integer >= 1"),
        ("trainer.device=tpu", "trainer.device='tpu': valid choices: auto, cpu, gpu"),
        ("trainer.distribution=horovod", "trainer.distribution='horovod': valid choices: none, mirrored"),
        ("trainer.distribution=mirrored trainer.on_nonfinite=skip", "on_nonfinite=skip does not work with trainer.distribution=mirrored"),
        ("trainer.jit_compile=maybe", "trainer.jit_compile='maybe': valid choices: auto, True, False"),
        ("trainer.stall_timeout_s=0", "trainer.stall_timeout_s=0.0: must be a finite number > 0"),
        ("trainer.backup_every=0", "trainer.backup_every=0: valid choices: a whole number of epochs"),
        ("trainer.backup_every=soon", r"trainer.backup_every=soon: valid choices: .* or a duration \(30s, 10min, 1h\)"),
        ("trainer.steps_per_execution=0", "trainer.steps_per_execution=0: valid choices: auto, or a whole number >= 1"),
        ("trainer.preemption_grace_s=0", r"trainer.preemption_grace_s=0.0: valid choices: a number of seconds > 0, or null"),
        ("backend=torch trainer.steps_per_execution=4",
         "trainer.steps_per_execution=4: Keras runs one step per execution on the torch backend; valid choices there: auto, 1"),
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


def documented_commands():
    """(args, error line or None) of every `python train.py ...` line in the code blocks of README.md and docs/*.md.

    A command followed in its block by an `error: ...` line documents that error.
    """
    pages = [CONFIGS.parent / "README.md", *sorted((CONFIGS.parent / "docs").glob("*.md"))]
    found, in_block = [], False
    lines = []
    for line in (line for page in pages for line in page.read_text().splitlines()):
        if lines and lines[-1].endswith("\\"):  # a shell line continued: one command
            lines[-1] = lines[-1][:-1].rstrip() + " " + line.strip()
        else:
            lines.append(line)
    for line, after in zip(lines, lines[1:] + [""]):
        if line.startswith("```"):
            in_block = not in_block
            continue
        at = line.find("python train.py")
        if in_block and at >= 0 and line[at - 1:at] != "`":  # a command, not one quoted in a description
            args = line[at:].split("python train.py", 1)[1].split("#", 1)[0].split()
            found.append(([a for a in args if a != "-m"], after if after.startswith("error: ") else None))
    return found


def readme_commands():
    """The documented commands that should work."""
    return [args for args, error in documented_commands() if error is None]


@pytest.fixture
def users_directory(tmp_path, monkeypatch):
    """Where the docs' commands run: the user's my_models.py, my_data.py and my_images/ beside them."""
    from tests.test_your_model import USER_DATA, USER_MODELS, write_folder

    (tmp_path / "my_models.py").write_text(USER_MODELS)
    (tmp_path / "my_data.py").write_text(USER_DATA)
    write_folder(tmp_path / "my_images", classes=2, per_class=1)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("args", readme_commands(), ids=lambda a: " ".join(a) or "(defaults)")
def test_every_readme_command_composes(compose, users_directory, args):
    # Sweep lists (a,b,c) are Hydra's multirun syntax: compose each command with the first value
    # (a list in brackets is one value); <placeholders> stand for the user's own paths.
    import re

    args = [re.sub(r"<[^>]*>", "x", a) for a in args if not a.startswith("--config-dir") and a != "my_configs"]
    first = [a.split("=", 1)[0] + "=" + re.split(r",(?![^\[]*\])", a.split("=", 1)[1])[0] if "=" in a else a
             for a in args]
    if "model=small" in first:  # the user's own config group (docs/your_model.md), made by that page's test
        first.remove("model=small")
    cfg = compose(*first)
    if not any("checkpoint=" in a for a in args):
        validate(cfg)


def test_readme_commands_were_found():
    assert len(readme_commands()) >= 8
    assert len([error for _, error in documented_commands() if error]) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("args, error", [c for c in documented_commands() if c[1]], ids=lambda a: str(a))
def test_documented_errors_are_what_train_py_prints(train_cli, tmp_path, args, error):
    result = train_cli(*args, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    printed = result.stderr.strip().splitlines()[-1]
    assert _matches_elided(printed, error), printed


def _matches_elided(printed: str, documented: str) -> bool:
    """`...` in the documented line stands for text the docs leave out."""
    import re

    return re.fullmatch(".*".join(re.escape(part) for part in documented.split("...")), printed) is not None


@pytest.mark.parametrize("argv, bad, hint", [
    (["model=resnet"], "model=resnet", None),
    (["-m", "loss=softmax_ce,sofmax_ce", "seed=0,1"], "loss=sofmax_ce", "did you mean softmax_ce"),
    (["experiment=stability_stres"], "experiment=stability_stres", "did you mean stability_stress"),
    (["hparams_search=optina"], "hparams_search=optina", "did you mean optuna"),
    (["+trainer=quik"], "trainer=quik", "did you mean quick"),
])
def test_unknown_group_options_are_named_with_the_closest_choices(argv, bad, hint):
    from keras_loss_recipes.config.config_files import group_options, unknown_choices

    [message] = unknown_choices(argv, group_options([CONFIGS]))
    group = bad.split("=")[0]
    assert message.startswith(f"{bad}: no such option of the {group} group; valid choices: ")
    assert (hint in message) if hint else "did you mean" not in message


def test_known_options_sweeps_and_plain_keys_pass_the_group_check():
    from keras_loss_recipes.config.config_files import group_options, unknown_choices

    argv = ["-m", "loss=softmax_ce,naive", "experiment=null", "hydra/launcher=joblib", "model.hidden_units=8",
            "optimizer.learning_rate=choice(0.1,0.01)", "+experiment=compare_losses", "data=idx"]
    assert unknown_choices(argv, group_options([CONFIGS])) == []


@pytest.mark.parametrize("override, suffix", [
    ([], "_cnn_sparse_from_logits"), (["loss=softmax_ce", "model=mlp"], "_mlp_softmax_ce"),
    (["model._target_=my_models.build"], "_my_models.build_sparse_from_logits"),
    (["recipe=probe"], "_probe"), (["recipe=evaluate"], "_evaluate"), (["recipe=doctor"], "_doctor"),
])
def test_a_run_directory_is_named_by_what_runs(override, suffix):
    """Training runs by their model and loss; the other recipes by their name, not by the default loss."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from keras_loss_recipes.config import resolvers

    resolvers.register()  # ${model_name:...}, as train.py registers it
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=override, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        run_dir = OmegaConf.select(cfg, "hydra.run.dir")
    assert run_dir.startswith("runs/") and run_dir.endswith(suffix)


@pytest.mark.parametrize("value, every", [
    (1, (1, None)), (3, (3, None)), ("30s", (None, 30.0)), ("10min", (None, 600.0)), ("1.5h", (None, 5400.0)),
])
def test_backup_every_reads_epochs_or_a_duration(value, every):
    from keras_loss_recipes.training.save_schedule import parse_every

    parsed = parse_every(value)
    assert (parsed.epochs, parsed.seconds) == every
    if parsed.epochs:  # due after every N-th epoch, however long ago the last save was
        assert [parsed.due(epoch, 0.0) for epoch in range(1, 7)] == [epoch % parsed.epochs == 0 for epoch in range(1, 7)]
    else:  # due once the duration has passed, at whichever epoch
        assert not parsed.due(1, parsed.seconds - 1) and parsed.due(1, parsed.seconds)


def test_help_names_the_command_as_it_was_typed(train_cli):
    shown = train_cli("--help", timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    first, second, third = shown.stdout.splitlines()[:3]
    assert first.startswith("python train.py: train a classifier") and "powered by Hydra" not in shown.stdout
    assert second.startswith("Usage: python train.py [group=option ...]") and third == ""
