#!/usr/bin/env bash
# first call and CLI throughput, on a quiet machine (issue 19 table rows)
cd /work/main
echo "## first embed(mol, n=10) in a fresh interpreter, wall seconds (3 runs)"
for i in 1 2 3; do
  .venv/bin/python -c "
import time; t=time.perf_counter()
import rdconfvae
from rdkit import Chem
rdconfvae.embed(Chem.MolFromSmiles('CC(=O)Nc1ccc(O)cc1'), n=10, seed=1)
print(f'{time.perf_counter()-t:.2f} s')"
done
echo "## CLI, examples/library_200.smi, n = 10"
for w in 1 2; do
  rm -f /tmp/lib_w$w.sdf*
  /usr/bin/time -f "workers $w: %e s wall" .venv/bin/rdconfvae embed examples/library_200.smi /tmp/lib_w$w.sdf -n 10 --workers $w --progress off 2>&1 | tail -2
done
