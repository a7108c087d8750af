"""Write macrocycles_peptides.sdf: the validity benchmark's macrocycle and peptide rows.

Public structures (macrolide antibiotics, a cyclic RGD peptide, crown ethers, cycloalkanes,
linear peptides of 5-10 residues), 12-60 heavy atoms. The coordinates are one ETKDGv3
conformer each (seed 0): ``bench validity`` uses only the graphs, never the coordinates.
Evaluation only; none of these is used for training or tuning.

    python benchmarks/data/make_macrocycles_peptides.py
"""

from __future__ import annotations

from pathlib import Path

from rdkit import Chem
from rdkit.Chem import AllChem

ERYTHROMYCIN = (
    "CC[C@@H]1[C@@]([C@@H]([C@H](C(=O)[C@@H](C[C@@]([C@@H]([C@H]([C@@H]([C@H](C(=O)O1)C)"
    "O[C@H]2C[C@@]([C@H]([C@@H](O2)C)O)(C)OC)C)O[C@H]3[C@@H]([C@H](C[C@H](O3)C)N(C)C)O)(C)O)"
    "C)C)O)(C)O"
)
MOLECULES = {
    "erythromycin": ERYTHROMYCIN,
    "cyclo-RGDfV": (
        "NC(=N)NCCC[C@@H]1NC(=O)CNC(=O)[C@H](CC(=O)O)NC(=O)[C@@H](Cc2ccccc2)NC(=O)[C@H](C(C)C)NC1=O"
    ),
    "18-crown-6": "C1COCCOCCOCCOCCOCCO1",
    "cyclododecane": "C1CCCCCCCCCCC1",
    "cyclohexadecanone": "O=C1CCCCCCCCCCCCCCC1",
    "leu-enkephalin": (
        "CC(C)C[C@H](NC(=O)[C@H](Cc1ccccc1)NC(=O)CNC(=O)CNC(=O)[C@@H](N)Cc1ccc(O)cc1)C(=O)O"
    ),
    "hexapeptide-KSFALLD": (
        "CC(C)C[C@H](NC(=O)[C@H](CC(C)C)NC(=O)[C@H](C)NC(=O)[C@H](Cc1ccccc1)NC(=O)[C@H](CO)"
        "NC(=O)[C@H](N)CCCCN)C(=O)N[C@@H](CC(=O)O)C(=O)O"
    ),
    "ala10": "C[C@H](N)C(=O)" + "N[C@@H](C)C(=O)" * 8 + "N[C@@H](C)C(=O)O",
    "gly-ser-5": "NCC(=O)N[C@@H](CO)C(=O)NCC(=O)N[C@@H](CO)C(=O)NCC(=O)O",
}


def main() -> None:
    out = Path(__file__).with_name("macrocycles_peptides.sdf")
    writer = Chem.SDWriter(str(out))
    for name, smiles in MOLECULES.items():
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        if AllChem.EmbedMolecule(mol, randomSeed=0) != 0:
            raise SystemExit(f"{name}: ETKDGv3 found no conformer")
        mol.SetProp("_Name", name)
        writer.write(mol)
    writer.close()
    print(f"{len(MOLECULES)} molecules -> {out}")


if __name__ == "__main__":
    main()
