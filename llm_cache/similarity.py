"""How close two turns are: the cosine of their embeddings, as float32 unit vectors (what the
semantic tier stores and compares). What embeddings blur is llm_cache.guards' to check."""

from collections.abc import Sequence

import numpy as np


def unit(vector: Sequence[float] | np.ndarray) -> np.ndarray:
    """The vector scaled to length 1, as float32 (stored and compared in that form)."""
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("an embedding of length 0 or with non-finite values")
    return array / norm


def to_bytes(vector: np.ndarray) -> bytes:
    return vector.astype("<f4").tobytes()


def ranked(query: np.ndarray, matrix: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k rows of `matrix` (unit vectors) closest to `query`, closest first: (row, cosine). None
    when the dimensions differ (vectors of another model under the same embedder name)."""
    if not matrix.size or matrix.shape[1] != query.size:
        return []
    scores = matrix @ query
    order = np.argsort(-scores)[:k]
    return [(int(i), float(scores[int(i)])) for i in order]
