"""Reference models for the full-ranking protocol: popularity and EASE.

Both fit on the training matrix X [n_users, n_items] (binary CSR) only.

- ``Popularity``: every user gets the items ranked by training interaction count.
- ``EASE`` (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019):
  G = X^T X + lambda I, P = G^-1, B = -P / diag(P) column-wise, diag(B) = 0, and
  score(u) = X[u] @ B. Items without training interactions have all-zero rows and
  columns in B, so the inverse is taken over the items seen in training only (the same
  B, a smaller matrix). With fewer users than items the inverse goes through the
  Woodbury identity, P = (I - X^T (lambda I + X X^T)^-1 X) / lambda, an
  [n_users, n_users] inverse, and scores are X[u] - (X[u] P) / diag(P) without forming B.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp


class Popularity:
    """Training interaction counts as the score of every user."""

    def __init__(self, train: sp.csr_matrix) -> None:
        self.counts = np.asarray(train.sum(axis=0), dtype=np.float64).ravel()

    def __call__(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(users), self.counts.size))


class EASE:
    """Closed-form item-item model with L2 weight ``lam``.

    ``dual`` picks the Woodbury form (default: when users are fewer than trained items).
    """

    def __init__(self, train: sp.csr_matrix, lam: float = 500.0, dual: bool | None = None) -> None:
        if lam <= 0:
            raise ValueError(f"EASE needs lam > 0, got {lam}")
        self.train = train.tocsr().astype(np.float64)
        self.lam = lam
        self.active = np.flatnonzero(np.asarray(self.train.sum(axis=0)).ravel() > 0)
        x = self.train[:, self.active].tocsr()
        self.dual = x.shape[0] < x.shape[1] if dual is None else dual
        self.weights: np.ndarray | None = None
        if self.dual:
            k = (x @ x.T).toarray()
            k[np.diag_indices_from(k)] += lam
            m = scipy.linalg.inv(k, overwrite_a=True, check_finite=False)
            self._x = x
            self._mx = np.asarray((x.T @ m).T)  # M X: [n_users, n_active]
            self._diag = (1.0 - np.asarray(x.multiply(self._mx).sum(axis=0)).ravel()) / lam
        else:
            gram = (x.T @ x).toarray()
            gram[np.diag_indices_from(gram)] += lam
            p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
            b = -p / np.diag(p)[None, :]
            b[np.diag_indices_from(b)] = 0.0
            self.weights = b  # [n_active, n_active]

    def __call__(self, users: np.ndarray) -> np.ndarray:
        out = np.zeros((len(users), self.train.shape[1]), dtype=np.float64)
        xu = self.train[users][:, self.active]
        if self.weights is not None:
            out[:, self.active] = xu @ self.weights
            return out
        xp = (xu.toarray() - (xu @ self._x.T) @ self._mx) / self.lam  # X[u] P
        out[:, self.active] = xu.toarray() - xp / self._diag[None, :]
        return out
