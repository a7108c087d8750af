import time
from rdkit import Chem
from rdkit.Chem import AllChem
lines = [l.split() for l in open("examples/library_200.smi") if not l.startswith("#")]
t0 = time.process_time()
for smi, name in lines:
    m = Chem.AddHs(Chem.MolFromSmiles(smi))
    p = AllChem.ETKDGv3(); p.randomSeed = 0; p.numThreads = 1
    AllChem.EmbedMultipleConfs(m, 10, p)
print("ETKDGv3 200 molecules n=10:", round(time.process_time() - t0, 1), "s CPU")
