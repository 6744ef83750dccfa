"""Whether several processes ended with the same weights: a checksum of each one's, compared across them."""
from __future__ import annotations


def weights_checksum(model):
    """A SHA-256 of every weight's bytes, as 8 uint32 words."""
    import hashlib

    import keras
    import numpy as np

    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable.value)).tobytes())
    return np.frombuffer(digest.digest(), dtype=np.uint32).copy()


def weights_match(model) -> bool:
    """Whether every process holds the same weights as process 0 (their checksums, gathered)."""
    import numpy as np
    from jax.experimental import multihost_utils

    gathered = np.asarray(multihost_utils.process_allgather(weights_checksum(model)))
    return bool(np.all(gathered == gathered[0]))
