"""Evaluation: RMSD, coverage and pose recovery, PoseBusters validity and energy ratios."""
