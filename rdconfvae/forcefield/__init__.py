"""Force fields after the solver: RDKit MMFF94s refinement and a batched torch MMFF94s."""
