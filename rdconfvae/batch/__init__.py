"""Batch surfaces: input files, the unit of work, worker processes, resumable output."""
