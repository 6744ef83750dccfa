"""Check the command line's config files and group choices before Hydra reads them.

Hydra reports a YAML syntax error as a long stack trace, and an unknown option of
a group (`loss=sparse`) with a config search path and a hint about stack traces;
a user who mistyped deserves one line with what is wrong, the valid choices and
the closest ones, and exit code 2.
"""
from __future__ import annotations

import sys
from pathlib import Path


def config_dirs(argv: list[str], default: Path) -> list[Path]:
    """The project's configs/ plus any --config-dir/-cd directories on the command line."""
    dirs = [default]
    for i, arg in enumerate(argv):
        for flag in ("--config-dir", "-cd"):
            if arg == flag and i + 1 < len(argv):
                dirs.append(Path(argv[i + 1]))
            elif arg.startswith(flag + "="):
                dirs.append(Path(arg.split("=", 1)[1]))
    return dirs


def yaml_syntax_errors(directory: Path) -> list[str]:
    import yaml

    errors = []
    for path in sorted(Path(directory).rglob("*.yaml")):
        try:
            yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            errors.append(f"{where}: YAML syntax error: {problem}")
    return errors


def exit_on_yaml_errors(argv: list[str], default: Path) -> None:
    _exit_on([e for d in config_dirs(argv, default) if d.is_dir() for e in yaml_syntax_errors(d)])


def _exit_on(errors: list[str]) -> None:
    """One `error:` line per problem on stderr, then exit code 2; nothing if there is none."""
    if errors:
        for line in errors:
            print(f"error: {line}", file=sys.stderr)
        raise SystemExit(2)


# --- unknown options of a config group, before Hydra ------------------------------------------

def group_options(dirs: list[Path]) -> dict[str, list[str]]:
    """Each config group (a folder of YAML files) and its options, over every config directory."""
    groups: dict[str, set[str]] = {}
    for directory in dirs:
        for path in Path(directory).glob("*/*.yaml"):
            groups.setdefault(path.parent.name, set()).add(path.stem)
    return {group: sorted(options) for group, options in groups.items()}


def closest(value: str, options: list[str]) -> list[str]:
    """Up to three options that look like `value`: those containing it first, then the most similar."""
    import difflib

    containing = [o for o in options if value and value in o]
    similar = difflib.get_close_matches(value, options, n=3, cutoff=0.5)
    return list(dict.fromkeys(containing + similar))[:3]


def overrides_of(argv: list[str]) -> dict[str, str]:
    """{key: value} of the command line's `key=value` overrides (a `+` or `~` before the key dropped); the
    options (`-m`, `--config-dir=...`) left out."""
    pairs = (arg.partition("=") for arg in argv if not arg.startswith("-"))
    return {key.lstrip("+~"): value for key, sep, value in pairs if sep}


def unknown_choices(argv: list[str], groups: dict[str, list[str]]) -> list[str]:
    """One message per `group=value` override (sweep lists included) whose value the group does not offer."""
    errors = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        group = key.lstrip("+~").split("@", 1)[0]
        # choice(...), range(...), glob(...) are Hydra's sweep functions: left to Hydra.
        if arg.startswith("-") or not sep or group not in groups or "(" in value:
            continue
        for choice in (v.strip().strip("'\"") for v in value.split(",")):
            if choice in groups[group] or choice == "null":
                continue
            hint = closest(choice, groups[group])
            errors.append(f"{group}={choice}: no such option of the {group} group; valid choices: "
                          f"{', '.join(groups[group])}" + (f"; did you mean {' or '.join(hint)}?" if hint else ""))
    return errors


def exit_on_unknown_choices(argv: list[str], default: Path) -> None:
    _exit_on(unknown_choices(argv, group_options([d for d in config_dirs(argv, default) if d.is_dir()])))
