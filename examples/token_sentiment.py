"""A synthetic sentiment task of token ids, for `data.inputs=tokens` and the embedding_bag model:

    python train.py data=npz data._target_=examples.token_sentiment.load data.inputs=tokens model=embedding_bag

Sequences of 8 to 40 ids from a vocabulary of 500, padded with id 0 to 40; ids 1..25 are positive words,
26..50 negative ones, the rest neutral. The label is 1 where the positive words outnumber the negative
ones, 0 where the negative do (sequences with as many of each are not drawn). `rows` (`+data.rows=N`) sets
how many sequences; the draw is seeded, so every call gives the same ones.
"""
import numpy as np

LENGTH, VOCABULARY, WORDS = 40, 500, 25


def load(rows: int = 4000):
    rng = np.random.default_rng(7)
    sequences, labels = [], []
    while len(sequences) < rows:
        ids = rng.integers(1, VOCABULARY, size=rng.integers(8, LENGTH + 1))
        positive, negative = np.sum(ids <= WORDS), np.sum((ids > WORDS) & (ids <= 2 * WORDS))
        if positive != negative:
            sequences.append(np.pad(ids, (0, LENGTH - len(ids))))
            labels.append(int(positive > negative))
    return np.stack(sequences), np.asarray(labels)
