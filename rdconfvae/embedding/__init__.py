"""Embedding one molecule: fragments, sampling, checks, fallback and the write-back, in order."""
