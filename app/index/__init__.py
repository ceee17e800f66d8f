"""FAISS content-embedding index: build (chosen by catalogue size), search, live add, recall."""

from app.index.faiss_index import FeedIndex, IndexParams, build_index, exact_search, measure_recall

__all__ = ["FeedIndex", "IndexParams", "build_index", "exact_search", "measure_recall"]
