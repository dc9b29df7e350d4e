"""Two datasets' values compared by chunked hashing; only blocks whose hashes differ are compared element-wise."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ..utils import new_hasher
from .nwb_report import EXAMPLES_PER_DATASET, ValueChange, plain_value
from .nwb_walk import decode_text, ref_name, same_value

if TYPE_CHECKING:
    import h5py


def _blocks(dset: Any, block_bytes: int) -> Iterator[np.ndarray]:
    """A dataset's values in blocks of whole rows (axis 0), about ``block_bytes`` each."""
    if dset.shape is None:  # an empty (null dataspace) dataset
        return
    if dset.ndim == 0:
        yield np.asarray(dset[()])
        return
    row_bytes = max(1, int(np.prod(dset.shape[1:], dtype=np.int64)) * max(1, dset.dtype.itemsize))
    step = max(1, block_bytes // row_bytes)
    if dset.chunks:  # whole chunks along axis 0, so no chunk is decompressed twice
        step = max(dset.chunks[0], step // dset.chunks[0] * dset.chunks[0])
    for start in range(0, dset.shape[0], step):
        yield np.asarray(dset[start:start + step])


def _canonical(h5: "h5py.File", block: np.ndarray) -> np.ndarray:
    """Blocks as comparable values: references become target paths, bytes become text."""
    import h5py

    if block.dtype == object or block.dtype.kind in "SO" or h5py.check_dtype(ref=block.dtype) is not None:
        flat = [ref_name(h5, v) if isinstance(v, h5py.Reference) else decode_text(v) for v in block.flat]
        return np.array(flat, dtype=object).reshape(block.shape)
    return block


def _block_hash(block: np.ndarray) -> bytes:
    if block.dtype == object:
        data = "\x1f".join("\x00" if v is None else str(v) for v in block.flat).encode("utf-8", "surrogatepass")
    elif block.dtype.names:  # compound: hash field by field so padding cannot differ
        data = b"".join(_block_hash(np.ascontiguousarray(block[name])) for name in block.dtype.names)
    else:
        data = np.ascontiguousarray(block).tobytes()
    hasher = new_hasher(digest_size=32)
    hasher.update(data)
    return hasher.digest()


class _ValueTally:
    """Accumulates the element comparison of the blocks whose hashes differ."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.differing = 0
        self.examples: list[tuple[Any, Any, Any]] = []
        self.ratio_lo = math.inf
        self.ratio_hi = -math.inf
        self.scalable = True

    def add(self, a: np.ndarray, b: np.ndarray, offset: int) -> None:
        if a.dtype == object or a.dtype.names:
            flat_a, flat_b = a.reshape(-1), b.reshape(-1)
            differs = np.array([not same_value(x, y) for x, y in zip(flat_a, flat_b)], dtype=bool).reshape(a.shape)
            self.scalable = False
        else:
            differs = a != b
            if a.dtype.kind == "f":
                differs &= ~(np.isnan(a) & np.isnan(b))
        count = int(np.count_nonzero(differs))
        if not count:
            return
        self.differing += count
        where = np.argwhere(differs) if a.ndim else np.zeros((1, 0), dtype=np.intp)
        for position in where[:EXAMPLES_PER_DATASET - len(self.examples)]:
            index = tuple(int(i) for i in position)
            full = (index[0] + offset, *index[1:]) if index else ()
            label: Any = full if len(full) != 1 else full[0]
            self.examples.append((label, plain_value(a[index]), plain_value(b[index])))
        if self.scalable and a.dtype.kind in "fiu":
            old, new = a[differs].astype(np.float64), b[differs].astype(np.float64)
            if np.any(old == 0) or not np.all(np.isfinite(old)) or not np.all(np.isfinite(new)):
                self.scalable = False
            else:
                ratio = new / old
                self.ratio_lo = min(self.ratio_lo, float(ratio.min()))
                self.ratio_hi = max(self.ratio_hi, float(ratio.max()))
        else:
            self.scalable = False

    def scale(self) -> float | None:
        if not self.scalable or self.differing < 2 or not math.isfinite(self.ratio_lo):  # one change is no pattern
            return None
        mid = (self.ratio_lo + self.ratio_hi) / 2
        # Values stored as float32 or rounded carry relative errors of ~1e-7; anything wider is not a scale.
        return round(mid, 6) if abs(self.ratio_hi - self.ratio_lo) <= 1e-5 * abs(mid) else None


def compare_datasets(h5a: Any, h5b: Any, a: Any, b: Any, block_bytes: int) -> ValueChange | None:
    """Read both datasets once, block by block; None if every block hashes the same."""
    hash_a, hash_b = new_hasher(digest_size=32), new_hasher(digest_size=32)
    tally = _ValueTally(a.shape or ())
    offset = 0
    for block_a, block_b in zip(_blocks(a, block_bytes), _blocks(b, block_bytes)):
        block_a, block_b = _canonical(h5a, block_a), _canonical(h5b, block_b)
        digest_a, digest_b = _block_hash(block_a), _block_hash(block_b)
        hash_a.update(digest_a)
        hash_b.update(digest_b)
        if digest_a != digest_b:
            tally.add(block_a, block_b, offset)
        offset += block_a.shape[0] if block_a.ndim else 1
    if hash_a.digest() == hash_b.digest() or not tally.differing:
        return None
    elements = int(np.prod(a.shape, dtype=np.int64)) if a.shape else 1
    return ValueChange(elements, tally.differing, tally.scale(), tally.examples, hash_a.hexdigest(),
                       hash_b.hexdigest())


__all__ = ["compare_datasets"]
