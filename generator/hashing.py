"""Counter-based pseudo-random numbers: random access to any record's randomness.

A value is a pure function of (seed, stream, record coordinates, field), so the content of any
sale, customer or file can be re-derived on its own, in any order, vectorized with NumPy.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MASK = (1 << 64) - 1


def mix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer, element-wise on uint64 (wrapping arithmetic).

    Args:
        x: A uint64 array.

    Returns:
        A new uint64 array of well-mixed values.
    """
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _u64(a: np.ndarray | int) -> np.ndarray:
    if isinstance(a, int):
        return np.asarray([a & _MASK], dtype=np.uint64)
    return np.asarray(a).astype(np.int64, copy=False).view(np.uint64)


class Hasher:
    """Keyed random numbers for one seed.

    Args:
        seed: The generation seed.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._base = int(mix64(np.asarray([seed & _MASK], dtype=np.uint64))[0])

    def keys(self, stream: int, *coords: np.ndarray | int) -> np.ndarray:
        """Keys of records identified by integer coordinates.

        Args:
            stream: A constant naming what the records are (sales, customers, ...).
            *coords: Integer arrays (broadcast together) or ints.

        Returns:
            A uint64 array of record keys.
        """
        k = mix64(np.asarray([(self._base ^ (stream * 0x632BE59BD9B4E019)) & _MASK], np.uint64))
        for c in coords:
            k = mix64(k ^ _u64(c))
        return k

    @staticmethod
    def bits(keys: np.ndarray, field: int) -> np.ndarray:
        """64 random bits per key for one field.

        Args:
            keys: Record keys from `keys`.
            field: A constant naming the field.

        Returns:
            A uint64 array.
        """
        return mix64(keys ^ np.uint64((field * 0xD1B54A32D192ED03) & _MASK))

    @classmethod
    def u(cls, keys: np.ndarray, field: int) -> np.ndarray:
        """Uniform floats in [0, 1) per key for one field.

        Args:
            keys: Record keys.
            field: A constant naming the field.

        Returns:
            A float64 array.
        """
        return (cls.bits(keys, field) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))

    @classmethod
    def ints(cls, keys: np.ndarray, field: int, n: int | np.ndarray) -> np.ndarray:
        """Uniform integers in [0, n) per key for one field.

        Args:
            keys: Record keys.
            field: A constant naming the field.
            n: The exclusive upper bound (scalar or per key).

        Returns:
            An int64 array.
        """
        return np.floor(cls.u(keys, field) * n).astype(np.int64)
