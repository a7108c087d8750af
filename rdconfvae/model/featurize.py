"""Molecular graph -> tensors for the ConfVAE model.

The model works on heavy atoms only; hydrogens enter as per-atom counts and
are placed after the heavy-atom conformer is built (see :mod:`rdconfvae.embed`).
Every heavy-atom pair (i < j) is an edge of the model: bond + 2-hop + 3-hop
edges cannot represent a drug-sized conformer even with exact distances,
the full distance matrix can (tests/test_solver.py proves it on Platinum poses).

The vocabulary below is owned by the project; feature sizes are derived from
it (``ATOM_DIM``, ``PAIR_DIM``) and recorded in the weights manifest together
with ``FEATURIZER_VERSION``. A molecule outside the vocabulary raises
:class:`~rdconfvae.errors.UnsupportedMoleculeError` naming the atom or bond.

Shapes glossary: N heavy atoms, P = N (N - 1) / 2 pairs, F features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdCoordGen, rdDepictor

from rdconfvae.errors import InvalidInputError, MoleculeTooLargeError, UnsupportedMoleculeError

__all__ = [
    "FEATURIZER_VERSION",
    "ELEMENTS",
    "MAX_HEAVY_ATOMS",
    "MIN_HEAVY_ATOMS",
    "ATOM_DIM",
    "PAIR_DIM",
    "MolGraph",
    "featurize",
    "check_supported",
    "check_atom_supported",
    "heavy_atom_mol",
    "pair_indices",
]

FEATURIZER_VERSION = "1"

ELEMENTS: tuple[str, ...] = ("C", "N", "O", "F", "P", "S", "Cl", "Br", "I")
CHARGES: tuple[int, ...] = (-2, -1, 0, 1, 2)
HYBRIDIZATIONS = (
    Chem.HybridizationType.SP,
    Chem.HybridizationType.SP2,
    Chem.HybridizationType.SP3,
    Chem.HybridizationType.SP3D,
    Chem.HybridizationType.SP3D2,
)
RING_SIZES: tuple[int, ...] = (3, 4, 5, 6, 7, 8)  # 8 means 8 or more
MAX_H = 4
MAX_DEGREE = 6
BOND_TYPES = (
    Chem.BondType.SINGLE,
    Chem.BondType.DOUBLE,
    Chem.BondType.TRIPLE,
    Chem.BondType.AROMATIC,
)
MAX_PATH = 8  # topological distances 1..8, then "more than 8"

#: Size limit of the model (heavy atoms); the training set covers 5-70.
MAX_HEAVY_ATOMS = 70
#: A single heavy atom has no pair; 2 is the smallest graph the model takes.
MIN_HEAVY_ATOMS = 2

ATOM_DIM = (
    len(ELEMENTS)
    + len(CHARGES)
    + 1  # aromatic
    + len(HYBRIDIZATIONS)
    + 1  # + other
    + 1  # in ring
    + len(RING_SIZES)  # smallest ring size
    + 4  # number of SSSR rings the atom is in: 0, 1, 2, 3+
    + MAX_H
    + 1  # total H count 0..4
    + MAX_DEGREE
    + 1  # heavy degree 0..6
    + 3  # CIP label: none, R, S
)
PAIR_DIM = (
    MAX_PATH
    + 1  # topological distance one-hot
    + len(BOND_TYPES)
    + 2  # bond type, conjugated, in ring (zeros when not bonded)
    + 1
    + len(RING_SIZES)  # share a ring; size of the smallest shared ring
    + 2  # cis / trans across a stereo double bond (1-4 pairs)
)


@dataclass
class MolGraph:
    """Tensors describing one heavy-atom graph.

    Shapes:
        atom_feat: (N, ATOM_DIM) float32
        pair_feat: (P, PAIR_DIM) float32
        pair_i, pair_j: (P,) int64, i < j, row-major order over the upper triangle
        chiral_idx: (C, 5) int64 -- centre, three neighbours (heavy atom order) and the
            fourth neighbour, or the centre again when it has three heavy neighbours: a
            centre with four takes its hand from its neighbours' arrangement (the signed
            volume seen from their centroid, :func:`rdconfvae.geometry.solver.signed_volumes`)
        chiral_sign: (C,) float32 -- required sign of the signed volume (see stereo.py)
        dbl_idx: (S, 4) int64 -- a, b, c, d of a stereo double bond b=c
        dbl_cis: (S,) float32 -- +1 when a and d must be cis, -1 when trans
        free_chiral_idx: (U, 5) int64 -- like ``chiral_idx``, for the potential tetrahedral
            centres whose configuration is not given (sampled over both hands)
        free_dbl_idx: (V, 4) int64 -- like ``dbl_idx``, for the potential stereo double
            bonds whose configuration is not given (sampled over E and Z)
    """

    atom_feat: torch.Tensor
    pair_feat: torch.Tensor
    pair_i: torch.Tensor
    pair_j: torch.Tensor
    chiral_idx: torch.Tensor
    chiral_sign: torch.Tensor
    dbl_idx: torch.Tensor
    dbl_cis: torch.Tensor
    free_chiral_idx: torch.Tensor
    free_dbl_idx: torch.Tensor

    @property
    def num_atoms(self) -> int:
        return int(self.atom_feat.shape[0])

    @property
    def num_pairs(self) -> int:
        return int(self.pair_i.shape[0])


def pair_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Upper-triangle pair indices (i < j) of an n-atom graph, row-major."""
    i, j = np.triu_indices(n, k=1)
    return i.astype(np.int64), j.astype(np.int64)


def heavy_atom_mol(mol: Chem.Mol) -> tuple[Chem.Mol, list[int]]:
    """Copy of ``mol`` without hydrogens, and the caller's index of each kept atom.

    Every hydrogen goes (also isotopic ones and MDL query hydrogens, which
    ``Chem.RemoveHs`` would keep: ``Chem.RemoveAllHs``); stereo and H counts
    are kept. Heavy atoms keep their relative order. A hydrogen that cannot be
    removed (H2, a lone H+) makes the molecule unsupported.
    """
    heavy_idx = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() != 1]
    if len(heavy_idx) == mol.GetNumAtoms():
        out = Chem.Mol(mol)
    else:
        try:
            out = Chem.RemoveAllHs(mol, sanitize=True)
        except Exception as exc:  # RDKit raises several sanitisation error types
            raise InvalidInputError(
                f"molecule does not sanitize without its hydrogens: {exc}"
            ) from exc
        if out.GetNumAtoms() != len(heavy_idx):
            raise UnsupportedMoleculeError(
                "a hydrogen could not be removed (e.g. H bonded to two atoms or a lone H)"
            )
    if not heavy_idx:
        raise UnsupportedMoleculeError("no heavy atom (H2, H+): nothing for the model to place")
    return out, heavy_idx


def check_supported(mol: Chem.Mol) -> None:
    """Raise UnsupportedMoleculeError naming the first atom or bond outside the vocabulary.

    ``mol`` is the heavy-atom molecule (see :func:`heavy_atom_mol`).
    """
    n = mol.GetNumAtoms()
    if n > MAX_HEAVY_ATOMS:
        raise MoleculeTooLargeError(
            f"{n} heavy atoms: the model's size limit is {MAX_HEAVY_ATOMS} heavy atoms"
        )
    if n < MIN_HEAVY_ATOMS:
        raise UnsupportedMoleculeError(
            f"{n} heavy atom(s): the model needs at least {MIN_HEAVY_ATOMS} heavy atoms"
        )
    for atom in mol.GetAtoms():
        check_atom_supported(atom)
    for bond in mol.GetBonds():
        if bond.GetBondType() not in BOND_TYPES:
            raise UnsupportedMoleculeError(
                f"bond {bond.GetIdx()} ({bond.GetBeginAtomIdx()}-{bond.GetEndAtomIdx()}): "
                f"bond type {bond.GetBondType()} is not supported"
            )


def check_atom_supported(atom: Chem.Atom) -> None:
    """Raise UnsupportedMoleculeError when ``atom`` (of a heavy-atom molecule) is outside the
    vocabulary: element, formal charge, radical electrons, degree or hydrogen count."""
    where = f"atom {atom.GetIdx()} ({atom.GetSymbol()})"
    if atom.GetSymbol() not in ELEMENTS:
        raise UnsupportedMoleculeError(
            f"{where}: element {atom.GetSymbol()} is not in the model's vocabulary "
            f"({' '.join(ELEMENTS)} + H)"
        )
    if atom.GetFormalCharge() not in CHARGES:
        raise UnsupportedMoleculeError(
            f"{where}: formal charge {atom.GetFormalCharge():+d} is outside "
            f"{CHARGES[0]:+d}..{CHARGES[-1]:+d}"
        )
    if atom.GetNumRadicalElectrons():
        raise UnsupportedMoleculeError(
            f"{where}: {atom.GetNumRadicalElectrons()} radical electron(s); "
            "radicals are not supported"
        )
    if atom.GetDegree() > MAX_DEGREE:
        raise UnsupportedMoleculeError(f"{where}: degree {atom.GetDegree()} > {MAX_DEGREE}")
    if atom.GetTotalNumHs() > MAX_H:
        raise UnsupportedMoleculeError(f"{where}: {atom.GetTotalNumHs()} hydrogens")


def _one_hot(value: object, choices: tuple, other: bool = False) -> list[float]:
    out = [0.0] * (len(choices) + int(other))
    try:
        out[choices.index(value)] = 1.0
    except ValueError:
        if not other:
            raise
        out[-1] = 1.0
    return out


def _ring_size_bin(size: int) -> int:
    return min(size, RING_SIZES[-1])


def _atom_features(mol: Chem.Mol) -> np.ndarray:
    ri = mol.GetRingInfo()
    rows = []
    for atom in mol.GetAtoms():
        idx = atom.GetIdx()
        n_rings = ri.NumAtomRings(idx)
        ring_size = [0.0] * len(RING_SIZES)
        if n_rings:
            smallest = min(len(r) for r in ri.AtomRings() if idx in r)
            ring_size[RING_SIZES.index(_ring_size_bin(smallest))] = 1.0
        cip = atom.GetProp("_CIPCode") if atom.HasProp("_CIPCode") else ""
        rows.append(
            _one_hot(atom.GetSymbol(), ELEMENTS)
            + _one_hot(atom.GetFormalCharge(), CHARGES)
            + [float(atom.GetIsAromatic())]
            + _one_hot(atom.GetHybridization(), HYBRIDIZATIONS, other=True)
            + [float(n_rings > 0)]
            + ring_size
            + _one_hot(min(n_rings, 3), (0, 1, 2, 3))
            + _one_hot(atom.GetTotalNumHs(), tuple(range(MAX_H + 1)))
            + _one_hot(atom.GetDegree(), tuple(range(MAX_DEGREE + 1)))
            + _one_hot(cip, ("", "R", "S"), other=False)
        )
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), ATOM_DIM)


def _stereo_double_bonds(mol: Chem.Mol) -> list[tuple[int, int, int, int, float]]:
    """(a, b, c, d, +1 cis / -1 trans) for every neighbour pair across a stereo double bond.

    The relation is read from a 2D depiction, which RDKit draws with the declared
    double-bond stereo; this avoids depending on how stereo atoms and CIP labels
    are stored.
    """
    bonds = [
        b
        for b in mol.GetBonds()
        if b.GetBondType() == Chem.BondType.DOUBLE
        and b.GetStereo() not in (Chem.BondStereo.STEREONONE, Chem.BondStereo.STEREOANY)
    ]
    if not bonds:
        return []
    depict = Chem.Mol(mol)
    # RDKit's own depiction first, CoordGen when it fails. Both are chosen per call: the
    # global SetPreferCoordGen switch is never touched (another thread may be depicting).
    try:
        rdDepictor.Compute2DCoords(depict, forceRDKit=True)
    except RuntimeError:
        try:
            rdCoordGen.AddCoords(depict)
        except RuntimeError as exc:
            raise UnsupportedMoleculeError(
                f"cannot lay out the stereo double bonds in 2D to read cis/trans ({exc})"
            ) from exc
    pos = depict.GetConformer().GetPositions()[:, :2]
    out = []
    for bond in bonds:
        b, c = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        axis = pos[c] - pos[b]
        for a_atom in mol.GetAtomWithIdx(b).GetNeighbors():
            a = a_atom.GetIdx()
            if a == c:
                continue
            side_a = np.sign(axis[0] * (pos[a] - pos[b])[1] - axis[1] * (pos[a] - pos[b])[0])
            for d_atom in mol.GetAtomWithIdx(c).GetNeighbors():
                d = d_atom.GetIdx()
                if d == b:
                    continue
                v = pos[d] - pos[b]
                side_d = np.sign(axis[0] * v[1] - axis[1] * v[0])
                if side_a == 0 or side_d == 0:
                    continue
                out.append((a, b, c, d, float(side_a * side_d)))
    return out


def _pair_features(
    mol: Chem.Mol, pi: np.ndarray, pj: np.ndarray, dbl: list[tuple[int, int, int, int, float]]
) -> np.ndarray:
    n = mol.GetNumAtoms()
    topo = Chem.GetDistanceMatrix(mol)
    feat = np.zeros((len(pi), PAIR_DIM), dtype=np.float32)
    path = np.clip(topo[pi, pj], 1, MAX_PATH + 1).astype(np.int64) - 1
    path[~np.isfinite(topo[pi, pj]) | (topo[pi, pj] > 1e6)] = MAX_PATH
    feat[np.arange(len(pi)), path] = 1.0
    col = MAX_PATH + 1

    # pair (i, j), i < j, sits at row i*n - i*(i+1)/2 + (j - i - 1)
    def row(i: int, j: int) -> int:
        if i > j:
            i, j = j, i
        return i * n - i * (i + 1) // 2 + (j - i - 1)

    for bond in mol.GetBonds():
        r = row(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx())
        feat[r, col + BOND_TYPES.index(bond.GetBondType())] = 1.0
        feat[r, col + len(BOND_TYPES)] = float(bond.GetIsConjugated())
        feat[r, col + len(BOND_TYPES) + 1] = float(bond.IsInRing())
    col += len(BOND_TYPES) + 2
    for ring in sorted(mol.GetRingInfo().AtomRings(), key=len, reverse=True):
        size_col = col + 1 + RING_SIZES.index(_ring_size_bin(len(ring)))
        for x in range(len(ring)):
            for y in range(x + 1, len(ring)):
                r = row(ring[x], ring[y])
                feat[r, col] = 1.0
                feat[r, col + 1 : col + 1 + len(RING_SIZES)] = 0.0  # smallest ring wins
                feat[r, size_col] = 1.0
    col += 1 + len(RING_SIZES)
    for a, _b, _c, d, cis in dbl:
        r = row(a, d)
        feat[r, col if cis > 0 else col + 1] = 1.0
    return feat


def _centre_row(centre: int, nbrs: list[int]) -> list[int]:
    """(centre, n1, n2, n3, n4) of a tetrahedral centre; n4 is the centre again when it has
    three heavy neighbours (its hydrogen is placed later)."""
    return [centre, nbrs[0], nbrs[1], nbrs[2], nbrs[3] if len(nbrs) > 3 else centre]


def _chiral_centres(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray]:
    from rdconfvae.geometry.stereo import chiral_reference_sign  # RDKit-side, no model import

    idx, sign = [], []
    for atom in mol.GetAtoms():
        tag = atom.GetChiralTag()
        if tag not in (Chem.ChiralType.CHI_TETRAHEDRAL_CW, Chem.ChiralType.CHI_TETRAHEDRAL_CCW):
            continue
        nbrs = [b.GetOtherAtomIdx(atom.GetIdx()) for b in atom.GetBonds()]
        if len(nbrs) < 3:
            continue
        idx.append(_centre_row(atom.GetIdx(), nbrs))
        sign.append(chiral_reference_sign(tag, len(nbrs)))
    return (
        np.asarray(idx, dtype=np.int64).reshape(-1, 5),
        np.asarray(sign, dtype=np.float32),
    )


def _free_stereo(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray]:
    """Potential stereo elements without a given configuration (RDKit's
    ``FindPotentialStereo``: unspecified or marked unknown): tetrahedral centres with at
    least three heavy neighbours as (centre, n1, n2, n3, n4 or centre), double bonds as
    (a, b, c, d)."""
    centres, bonds = [], []
    wanted = (Chem.StereoSpecified.Unspecified, Chem.StereoSpecified.Unknown)
    for info in Chem.FindPotentialStereo(mol, cleanIt=False):
        if info.specified not in wanted:
            continue
        if info.type == Chem.StereoType.Atom_Tetrahedral:
            atom = mol.GetAtomWithIdx(info.centeredOn)
            nbrs = [b.GetOtherAtomIdx(atom.GetIdx()) for b in atom.GetBonds()]
            if len(nbrs) >= 3:
                centres.append(_centre_row(atom.GetIdx(), nbrs))
        elif info.type == Chem.StereoType.Bond_Double:
            bond = mol.GetBondWithIdx(info.centeredOn)
            b, c = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
            a = [n.GetIdx() for n in bond.GetBeginAtom().GetNeighbors() if n.GetIdx() != c]
            d = [n.GetIdx() for n in bond.GetEndAtom().GetNeighbors() if n.GetIdx() != b]
            if a and d:
                bonds.append([a[0], b, c, d[0]])
    return (
        np.asarray(centres, dtype=np.int64).reshape(-1, 5),
        np.asarray(bonds, dtype=np.int64).reshape(-1, 4),
    )


def featurize(mol: Chem.Mol) -> MolGraph:
    """Featurize a heavy-atom molecule (no explicit H; see :func:`heavy_atom_mol`).

    The molecule must be sanitized; stereo is (re)assigned on a private copy.
    """
    if mol is None:
        raise InvalidInputError("molecule is None")
    if any(a.GetAtomicNum() == 1 for a in mol.GetAtoms()):
        raise InvalidInputError("featurize() takes a heavy-atom molecule; call heavy_atom_mol()")
    check_supported(mol)
    work = Chem.Mol(mol)
    work.RemoveAllConformers()
    Chem.AssignStereochemistry(work, cleanIt=True, force=True)
    n = work.GetNumAtoms()
    pi, pj = pair_indices(n)
    dbl = _stereo_double_bonds(work)
    chiral_idx, chiral_sign = _chiral_centres(work)
    dbl_arr = np.asarray([d[:4] for d in dbl], dtype=np.int64).reshape(-1, 4)
    free_chiral, free_dbl = _free_stereo(work)
    return MolGraph(
        atom_feat=torch.from_numpy(_atom_features(work)),
        pair_feat=torch.from_numpy(_pair_features(work, pi, pj, dbl)),
        pair_i=torch.from_numpy(pi),
        pair_j=torch.from_numpy(pj),
        chiral_idx=torch.from_numpy(chiral_idx),
        chiral_sign=torch.from_numpy(chiral_sign),
        dbl_idx=torch.from_numpy(dbl_arr),
        dbl_cis=torch.tensor([d[4] for d in dbl], dtype=torch.float32),
        free_chiral_idx=torch.from_numpy(free_chiral),
        free_dbl_idx=torch.from_numpy(free_dbl),
    )
