"""CountMatrix: one row of weights (bincount) and replicate batches (scipy CSR) give the dense
product, exactly, including repeated pairs and the empty matrix."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_rcnn.platform.evaluation.count_matrix import CountMatrix


def _dense(rows, cols, shape) -> np.ndarray:
    out = np.zeros(shape)
    np.add.at(out, (rows, cols), 1)
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.int32])
def test_products_equal_the_dense_product(dtype):
    rng = np.random.default_rng(0)
    shape = (40, 30)
    rows, cols = rng.integers(0, 40, 500), rng.integers(0, 30, 500)  # repeats included
    m = CountMatrix.from_pairs(rows, cols, shape, dtype)
    dense = _dense(rows, cols, shape)
    weights = rng.integers(0, 4, (5, 30)).astype(np.int32)
    np.testing.assert_array_equal(m.weighted(weights), weights @ dense.T)  # B > 1: scipy
    np.testing.assert_array_equal(m.weighted(weights[2:3]), weights[2:3] @ dense.T)  # bincount
    assert m.weighted(weights[:1]).shape == (1, 40)
    np.testing.assert_array_equal(m.row_sums(), dense.sum(axis=1))
    assert m.nnz == 500


def test_empty_matrix_and_empty_rows():
    m = CountMatrix(np.zeros(0, np.int64), np.zeros(0, np.int64), (3, 4))
    w = np.ones((2, 4))
    np.testing.assert_array_equal(m.weighted(w), np.zeros((2, 3)))
    np.testing.assert_array_equal(m.weighted(w[:1]), np.zeros((1, 3)))
    np.testing.assert_array_equal(m.row_sums(), [0, 0, 0])
    none = CountMatrix(np.zeros(0, np.int64), np.zeros(0, np.int64), (0, 4))
    assert none.weighted(w).shape == (2, 0) and none.weighted(w[:1]).shape == (1, 0)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="non-decreasing"):
        CountMatrix(np.array([1, 0]), np.array([0, 0]), (2, 1))
    with pytest.raises(ValueError, match="differ in length"):
        CountMatrix(np.array([0, 1]), np.array([0]), (2, 1))
    with pytest.raises(ValueError, match=r"shape \(B, 1\)"):
        CountMatrix(np.array([0]), np.array([0]), (2, 1)).weighted(np.ones((1, 2)))
