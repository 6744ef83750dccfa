"""A table of feature vectors in a CSV file (`data=csv`): a header row, numeric columns, one of them the label.

    python train.py data=csv data.path=my_table.csv data.label=species model=mlp

Every column but `data.label` is a feature (a number in every row; an empty cell is a missing value, an
error naming its column and line). The label column's distinct values are the classes, in sorted order
(numerically where every value is a number) and named by those values, so labels `setosa`, `versicolor`
become classes 0, 1. Test and validation rows are split off (stratified, seeded): `data.test_examples`,
`data.val_examples`.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from keras_loss_recipes.data import inputs
from keras_loss_recipes.data.arrays import splits_from_arrays
from keras_loss_recipes.data.splits import Splits
from keras_loss_recipes.runtime.errors import UserError


def load_csv(cfg, split_seed: int) -> Splits:
    where = f"data.path={cfg.path}"
    header, rows = read_table(cfg.path)
    label = str(cfg.label) if cfg.label is not None else None
    if label not in header:
        said = "data.label is not set" if label is None else f"data.label={label}: no such column in {where}"
        raise UserError(f"{said}; name the label column, one of: {', '.join(header)}")
    column = header.index(label)
    features = [name for name in header if name != label]
    if not features:
        raise UserError(f"{where}: the label column {label} is its only column; a feature column is needed")
    x = _numbers([[row[i] for i in range(len(header)) if i != column] for row in rows], features, where)
    if inputs.kind_of(cfg) == inputs.TOKENS and np.array_equal(x, np.round(x)):
        x = x.astype(np.int64)  # whole numbers in a text file: the ids they spell
    y, names = as_classes([row[column] for row in rows])
    return splits_from_arrays({"x_train": x, "y_train": y, "class_names": names}, cfg, split_seed, where, None)


def read_table(path) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of a CSV file, every row as long as the header."""
    file = Path(str(path or "")).expanduser()
    if not path:
        raise UserError("data.path is not set: data=csv needs data.path=/path/to/table.csv and data.label=<column>")
    if not file.is_file():
        raise UserError(f"data.path={path}: no such file")
    with file.open(newline="") as text:
        table = [row for row in csv.reader(text) if row]
    if len(table) < 2:
        raise UserError(f"data.path={path}: a header row and at least one row of values are needed")
    header = [name.strip() for name in table[0]]
    for line, row in enumerate(table[1:], start=2):
        if len(row) != len(header):
            raise UserError(f"data.path={path}: line {line} has {len(row)} values, the header {len(header)} columns")
    return header, table[1:]


def _numbers(cells: list[list[str]], names: list[str], where: str) -> np.ndarray:
    """The feature cells as float64; a UserError naming the column and line of an empty or non-numeric one."""
    x = np.empty((len(cells), len(names)))
    for row, values in enumerate(cells):
        for col, value in enumerate(values):
            try:
                x[row, col] = float(value) if value.strip() else np.nan
            except ValueError:
                raise UserError(f"{where}: column {names[col]}, line {row + 2} holds {value!r}; features must be "
                                "numbers") from None
    missing = np.argwhere(~np.isfinite(x))
    if len(missing):
        row, col = missing[0]
        raise UserError(f"{where}: column {names[col]}, line {row + 2} is {cells[row][col].strip() or 'empty'}; "
                        f"features must be finite numbers: fill or drop the {len(np.unique(missing[:, 0]))} row(s)")
    return x


def as_classes(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Labels 0..K-1 of the label column's values, and the K class names: the distinct values, sorted
    (numerically where every one is a number)."""
    values = [value.strip() for value in values]
    distinct = sorted(set(values))
    try:
        distinct = sorted(distinct, key=float)
    except ValueError:
        pass
    index = {value: i for i, value in enumerate(distinct)}
    return np.asarray([index[value] for value in values], dtype=np.int64), np.asarray(distinct, dtype=str)
