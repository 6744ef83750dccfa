"""What every generated docs page shares: the machine and versions it names, and its block in README.md.

A page the project generates (the findings, the doctor's example, the layout) says which command
made it, where and with what; a README block it owns lies between two markers and is replaced whole.
"""
from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path


def environment(command: str, wall_s: float, quick: bool, left_out: list[str]) -> dict:
    """The command that made a page, when, how long it took, on which machine, with which framework versions."""
    from keras_loss_recipes.runtime.backends import cpu_name

    from importlib import metadata

    versions = {"python": platform.python_version()}
    for package in ("tensorflow", "keras", "jax", "torch"):
        try:  # the installed distribution's version: no need to import (and start) each framework
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"command": command, "date": time.strftime("%Y-%m-%d %H:%M %Z"), "wall_s": round(wall_s, 1),
            "quick": quick, "machine": {"cpu": cpu_name(), "cores": os.cpu_count()}, "versions": versions,
            "left_out": left_out}


def replace_readme_block(readme: Path, block: str, begin: str, end: str) -> None:
    """The generated block of `readme` from `begin` to `end` replaced by `block`."""
    text = readme.read_text()
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n", re.S)
    if not pattern.search(text):
        raise ValueError(f"{readme} has no markers {begin} ... {end}")
    readme.write_text(pattern.sub(lambda _: block, text))
