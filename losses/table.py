"""The formulation table of the README, rendered from the registry.

    python -m losses        prints it (tests/test_formulations.py checks that README.md holds it)
"""
from __future__ import annotations

from losses.formulations import ALL_BACKENDS, formulation, names

LABEL_NAMES = {"sparse": "int", "onehot": "one-hot"}


def formulation_table() -> str:
    """Markdown: one row per formulation, with the loss path measured on each backend."""
    lines = [
        "| `loss=` | head | labels | computes | path on " + " / ".join(ALL_BACKENDS) + " | use it when |",
        "|---|---|---|---|---|---|",
    ]
    for name in names():
        f = formulation(name)
        paths = " / ".join(f.expected_path(b) for b in ALL_BACKENDS)
        lines.append(f"| `{name}` | {f.head} | {LABEL_NAMES[f.labels]} | `{f.computes}` | {paths} | {f.use_when} |")
    return "\n".join(lines) + "\n"
