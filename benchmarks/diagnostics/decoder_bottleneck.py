"""Where does the model's pose error come from? Held-out CCD validation molecules.

    python benchmarks/diagnostics/decoder_bottleneck.py --molecules 100 \
        > benchmarks/diagnostics/decoder_bottleneck.md

For each molecule of the CCD validation split that is *not* among the 400 used to pick
checkpoints (``rdconfvae.train`` selects those with seed 1), the experimental conformation
R* is compared with coordinates solved (same solver, stereo repair and amide snapping as
``embed``) from four distance sets:

* ``exact``: the distances of R* itself (the solver's own error),
* ``posterior mean``: the decoder at z = mean of q(z | G, R*) (the model knows the answer:
  how much of R* survives the latent bottleneck and the decoder),
* ``prior mean``: the decoder at z = mean of p(z | G),
* ``prior, 50 samples``: 50 draws z ~ p(z | G), the minimum over them (what ``embed`` does).

Distances cannot tell mirror images apart; for molecules without tetrahedral stereo
centres the mirror image of each solution is scored too (with stereo centres the solver's
stereo step already picks the handedness). Heavy-atom, symmetry-aware RMSD without
reflection (``rdconfvae.evaluation.metrics``). Never touches benchmark sets.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from rdconfvae.embedding.sampling import bounds_geometry, sample_chunk
from rdconfvae.evaluation.metrics import heavy_atom_mol, min_rmsd_to_pose
from rdconfvae.geometry.conformers import heavy_with_confs
from rdconfvae.model import featurize as fz
from rdconfvae.model.store import load_model
from rdconfvae.train import PRESETS, checkpoint_selection, load_records


class _Decoded:
    """Stands in for the loaded model inside ``sample_chunk``: returns given distances."""

    def __init__(self, dist: torch.Tensor, log_sigma: torch.Tensor) -> None:
        self.module = self
        self._out = (dist.detach(), log_sigma.detach())

    def sample_distances(self, *args: object) -> tuple[torch.Tensor, torch.Tensor]:
        return self._out


def _solve(heavy, graph, geom, dist, log_sigma):
    xs = []
    for d, s in zip(torch.split(dist, 16), torch.split(log_sigma, 16), strict=True):
        x, ok = sample_chunk(_Decoded(d, s), graph, geom, None, 1.0, 30, True)
        xs.append(x[ok])
    x = torch.cat(xs)
    if graph.chiral_idx.shape[0] == 0:
        x = torch.cat([x, x * torch.tensor([-1.0, 1.0, 1.0])])
    return heavy_with_confs(heavy, x.double().numpy())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data_build/ccd"))
    ap.add_argument("--molecules", type=int, default=100)
    ap.add_argument("--samples", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(1)
    preset = PRESETS["default"]
    val = [r for r in load_records(args.data) if r.split == "val"]
    chosen = set(checkpoint_selection(len(val), preset))  # the trainer's, left out
    pool = [r for i, r in enumerate(val) if i not in chosen]
    order = np.random.default_rng(5).permutation(len(pool))
    model = load_model()
    net = model.module
    rows: dict[str, list[float]] = {
        "exact distances": [], "posterior mean": [], "prior mean": [],
        f"prior, {args.samples} samples": [],
    }  # fmt: skip
    for i in order:
        if len(rows["exact distances"]) >= args.molecules:
            break
        rec = pool[i]
        try:
            heavy, heavy_idx = fz.heavy_atom_mol(rec.mol)
            if not 4 <= heavy.GetNumAtoms() <= preset.max_heavy_atoms:
                continue
            g = fz.featurize(heavy)
        except (ValueError, RuntimeError):
            continue
        ref = heavy_atom_mol(rec.mol)
        geom = bounds_geometry(heavy, g)
        n = g.num_atoms
        inv = torch.full((n,), 1.0 / max(n - 1, 1))
        pos = torch.tensor(rec.mol.GetConformer().GetPositions()[heavy_idx], dtype=torch.float32)
        ref_d = (pos[g.pair_i] - pos[g.pair_j]).norm(dim=-1)
        with torch.no_grad():
            h, e, mu_p, _ = net.encode_graph(g.atom_feat, g.pair_feat, g.pair_i, g.pair_j, inv)
            mu_q, _ = net.encode_posterior(h, e, g.pair_i, g.pair_j, inv, ref_d)
            # models with path layers (rdconfvae.model.network) also need the pair features
            extra = (g.pair_feat,) if model.manifest["model_config"].get("path_layers") else ()
            decoded = {
                key: net.decode(h, e, g.pair_i, g.pair_j, inv, z.unsqueeze(0), *extra)
                for key, z in (("posterior mean", mu_q), ("prior mean", mu_p))
            }
            gen = torch.Generator().manual_seed(int(i))
            eps = torch.randn(args.samples, n, model.latent, generator=gen)
            dist, sig = net.sample_distances(
                g.atom_feat, g.pair_feat, g.pair_i, g.pair_j, inv, eps, 1.0
            )
        rows["exact distances"].append(
            min_rmsd_to_pose(
                _solve(heavy, g, geom, ref_d[None], torch.full((1, len(ref_d)), -3.0)), ref
            )
        )
        for key, (mu, log_sigma) in decoded.items():
            rows[key].append(min_rmsd_to_pose(_solve(heavy, g, geom, mu.exp(), log_sigma), ref))
        rows[f"prior, {args.samples} samples"].append(
            min_rmsd_to_pose(_solve(heavy, g, geom, dist, sig), ref)
        )
    sha = model.manifest["sha256"][:12]
    print(
        f"# Decoder bottleneck: {len(rows['exact distances'])} held-out CCD validation molecules\n"
    )
    print(
        f"Weights sha256 `{sha}...` (epoch {model.manifest['training']['epochs']}); "
        f"command: `python {' '.join(sys.argv)}`\n"
    )
    print("| distances from | median min-RMSD (A) | < 0.5 A | < 1 A | < 1.5 A |")
    print("|---|---|---|---|---|")
    for key, vals in rows.items():
        a = np.asarray(vals)
        print(
            f"| {key} | {np.median(a):.3f} | {100 * (a < 0.5).mean():.1f} % | "
            f"{100 * (a < 1).mean():.1f} % | {100 * (a < 1.5).mean():.1f} % |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
