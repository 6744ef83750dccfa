"""Check the YAML syntax of the config files before Hydra reads them.

Hydra reports a YAML syntax error as a long stack trace; a user who mistyped a
bracket deserves one line with the file and the position instead.
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
    errors = [e for d in config_dirs(argv, default) if d.is_dir() for e in yaml_syntax_errors(d)]
    if errors:
        for line in errors:
            print(f"error: {line}", file=sys.stderr)
        raise SystemExit(2)
