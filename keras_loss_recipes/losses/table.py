"""The README's two formulation tables, rendered from the registry.

    python -m keras_loss_recipes.losses        prints them (tests/test_layout.py checks that README.md holds both)
"""
from __future__ import annotations

from keras_loss_recipes.losses.formulations import ALL_BACKENDS, formulation, names

LABEL_NAMES = {"sparse": "int", "onehot": "one-hot", "binary": "0/1 per unit"}


def formulation_table() -> str:
    """Markdown: what each formulation is, and when to use it."""
    lines = ["| `loss=` | head | labels | computes | use it when |", "|---|---|---|---|---|"]
    for name in names():
        f = formulation(name)
        lines.append(f"| `{name}` | {f.head} | {LABEL_NAMES[f.labels]} | `{f.computes}` | {f.use_when} |")
    return "\n".join(lines) + "\n"


def path_table() -> str:
    """Markdown: the loss path Keras takes with each formulation, per backend (measured by the tests)."""
    lines = ["| formulation | " + " | ".join(ALL_BACKENDS) + " |", "|---" * (len(ALL_BACKENDS) + 1) + "|"]
    for name in names():
        paths = " | ".join(formulation(name).expected_path(b) for b in ALL_BACKENDS)
        lines.append(f"| `{name}` | {paths} |")
    return "\n".join(lines) + "\n"
