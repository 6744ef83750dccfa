"""How to install an optional framework: the command its requirements file recommends.

The requirements files at the project root are the one place that says how
(for PyTorch: the CPU-only wheel's index, not PyPI's multi-gigabyte CUDA
build), so error messages quote them instead of retyping a command.
"""
from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = {"tensorflow": "requirements.txt", "jax": "requirements-jax.txt", "torch": "requirements-torch.txt"}


def install_command(requirements: str) -> str:
    """The `pip install ...` line in the comments of `requirements`, else `pip install -r <requirements>`."""
    try:
        lines = (PROJECT_ROOT / requirements).read_text().splitlines()
    except OSError:  # an installed copy of the package: the file is not beside it
        lines = []
    for line in lines:
        text = line.lstrip("#").strip()
        if line.startswith("#") and text.startswith("pip install"):
            return text
    return f"pip install -r {requirements}"


def install_hint(backend: str) -> str:
    requirements = REQUIREMENTS[backend]
    return f"{requirements} recommends: {install_command(requirements)}"
