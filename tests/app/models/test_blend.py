"""``blend_retrieval``: the pipeline's final order mixes the ranker and the retrieval score."""

import numpy as np
import pytest

from app.models.ranker import blend_retrieval


def test_blend_standardises_each_row_and_mixes():
    value = np.array([[0.9, 0.1, 0.5], [2.0, 2.0, 2.0]])
    retrieval = np.array([[-1.0, 3.0, 1.0], [0.1, 0.3, 0.2]])
    ranker_only = blend_retrieval(value, retrieval, 0.0)
    assert np.argsort(-ranker_only[0]).tolist() == [0, 2, 1]
    assert ranker_only[0].mean() == pytest.approx(0) and ranker_only[0].std() == pytest.approx(1)
    assert (ranker_only[1] == 0).all()  # a constant row carries no order
    retrieval_only = blend_retrieval(value, retrieval, 1.0)
    assert np.argsort(-retrieval_only[0]).tolist() == [1, 2, 0]
    # the scale of either score does not matter, only its order and spread in the row
    assert np.allclose(
        blend_retrieval(value * 100, retrieval, 0.5), blend_retrieval(value, retrieval, 0.5)
    )
    half = blend_retrieval(value, retrieval, 0.5)
    assert np.allclose(half, 0.5 * ranker_only + 0.5 * retrieval_only)
    assert np.argsort(-half[1]).tolist() == [1, 2, 0]  # row 2: retrieval decides the ties
    with pytest.raises(ValueError, match="blend weight"):
        blend_retrieval(value, retrieval, 1.5)
