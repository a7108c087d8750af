"""From distances to conformers: the solver, stereo, hydrogens and the geometry gate."""
