"""The network: TorchScript equals eager; the shipped file loads with torch.jit.load alone."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from rdkit import Chem

from rdconfvae.model import featurize as fz
from rdconfvae.model.export import script_model
from rdconfvae.model.network import ConfVAE, default_config
from rdconfvae.model.store import load_model, weights_dir


def _inputs(smiles: str, k: int = 3):
    g = fz.featurize(Chem.MolFromSmiles(smiles))
    n = g.num_atoms
    inv = torch.full((n,), 1.0 / (n - 1))
    eps = torch.randn(k, n, 8, generator=torch.Generator().manual_seed(0))
    return g, inv, eps


def test_scripted_equals_eager():
    torch.manual_seed(0)
    model = ConfVAE(default_config(fz.ATOM_DIM, fz.PAIR_DIM)).eval()
    scripted = script_model(model)
    g, inv, eps = _inputs("CC(=O)Nc1ccc(O)cc1")
    args = (g.atom_feat, g.pair_feat, g.pair_i, g.pair_j, inv, eps, 1.0)
    with torch.no_grad():
        d_eager, s_eager = model.sample_distances(*args)
        d_script, s_script = scripted.sample_distances(*args)
    assert d_eager.shape == (3, g.num_pairs)
    torch.testing.assert_close(d_eager, d_script, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s_eager, s_script, rtol=1e-5, atol=1e-5)
    assert torch.all(d_eager > 0)


def test_shipped_weights_match_their_manifest_and_run():
    loaded = load_model()
    manifest = loaded.manifest
    assert manifest["featurizer"]["atom_dim"] == fz.ATOM_DIM
    assert manifest["featurizer"]["version"] == fz.FEATURIZER_VERSION
    g, inv, _ = _inputs("CC(=O)Oc1ccccc1C(=O)O")
    eps = torch.zeros(2, g.num_atoms, loaded.latent)
    with torch.no_grad():
        d, _ = loaded.module.sample_distances(
            g.atom_feat, g.pair_feat, g.pair_i, g.pair_j, inv, eps, 1.0
        )
    bonded = g.pair_feat[:, 0] == 1  # topological distance 1
    # bonded heavy-atom distances of aspirin lie between 1.2 and 1.55 A
    assert torch.all((d[:, bonded] > 1.1) & (d[:, bonded] < 1.65))


def test_torchscript_file_loads_with_torch_alone(tmp_path):
    """A fresh interpreter loads the shipped file with torch.jit.load only (no rdconfvae
    import) and runs the inference method."""
    path = load_model().path
    g, inv, _ = _inputs("c1ccccc1O")
    torch.save(
        {"a": g.atom_feat, "p": g.pair_feat, "i": g.pair_i, "j": g.pair_j, "inv": inv},
        tmp_path / "inp.pt",
    )
    latent = load_model().latent
    code = (
        "import sys, torch, json\n"
        "sys.modules['rdconfvae'] = None  # any import of rdconfvae now fails\n"
        f"m = torch.jit.load({str(path)!r})\n"
        f"x = torch.load({str(tmp_path / 'inp.pt')!r}, weights_only=True)\n"
        f"eps = torch.zeros(2, x['a'].shape[0], {latent})\n"
        "d, s = m.sample_distances(x['a'], x['p'], x['i'], x['j'], x['inv'], eps, 1.0)\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('rdconfvae.'))\n"
        "print(json.dumps([list(d.shape), loaded]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    shape, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert shape == [2, g.num_pairs]
    assert loaded == []  # nothing of rdconfvae was imported to load and run the file


def test_manifest_records_provenance():
    manifest = json.loads((weights_dir() / "manifest.json").read_text())
    for key in ("sha256", "model_config", "training", "validation", "versions"):
        assert key in manifest
    assert manifest["training"]["data_hash"]
    assert manifest["versions"]["torch"]


# ------------------------------------------------------------ architecture options (issue 17)

_OPTIONS = (
    {"path_layers": 2},
    {"path_layers": 1, "path_iters": 2},
    {"global_latent": 2},
    {"path_layers": 2, "global_latent": 3},
)


def _model(options: dict, latent: int = 8) -> ConfVAE:
    config = default_config(fz.ATOM_DIM, fz.PAIR_DIM)
    config.update({"hidden": 32, "latent": latent, **options})
    return ConfVAE(config)


def test_default_config_builds_the_shipped_module():
    """No option keys (or all 0) build the shipped parameters, name for name and shape for
    shape, and consume the same random draws (so a default training run is unchanged)."""
    shipped = load_model()
    config = dict(shipped.manifest["model_config"])
    torch.manual_seed(0)
    plain = ConfVAE(config).state_dict()
    torch.manual_seed(0)
    zeros = ConfVAE({**config, "path_layers": 0, "global_latent": 0}).state_dict()
    script = shipped.module.state_dict()
    assert list(plain) == list(script)
    assert all(plain[k].shape == script[k].shape for k in plain)
    assert all(torch.equal(plain[k], zeros[k]) for k in plain)


def test_bond_paths_match_a_brute_force_enumeration():
    """Every (pair (a,b) <- pair (a,c) via bond (b,c), c != a) triple, nothing else."""
    mol = Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1")
    g = fz.featurize(mol)
    from rdconfvae.model.network import bond_paths

    src, via, dst, inv_count = bond_paths(g.pair_feat, g.pair_i, g.pair_j, g.num_atoms)
    pid = {}
    for p, (i, j) in enumerate(zip(g.pair_i.tolist(), g.pair_j.tolist(), strict=True)):
        pid[(i, j)] = pid[(j, i)] = p
    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
    expected = []
    for (a, b), p in pid.items():  # both orientations of each pair
        for u, v in bonds:
            for x, c in ((u, v), (v, u)):
                if x == b and c != a:
                    expected.append((pid[(a, c)], pid[(x, c)], p))
    got = sorted(zip(src.tolist(), via.tolist(), dst.tolist(), strict=True))
    assert got == sorted(expected)
    counts = torch.bincount(dst, minlength=g.num_pairs).float()
    torch.testing.assert_close(inv_count, 1.0 / counts.clamp(min=1.0))


def test_options_script_equals_eager_and_decode_shapes():
    g, inv, eps = _inputs("CC(=O)Nc1ccc(O)cc1")
    for options in _OPTIONS:
        torch.manual_seed(0)
        model = _model(options).eval()
        scripted = script_model(model)
        args = (g.atom_feat, g.pair_feat, g.pair_i, g.pair_j, inv, eps, 1.0)
        with torch.no_grad():
            d_eager, s_eager = model.sample_distances(*args)
            d_script, s_script = scripted.sample_distances(*args)
        assert d_eager.shape == (3, g.num_pairs), options
        torch.testing.assert_close(d_eager, d_script, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(s_eager, s_script, rtol=1e-5, atol=1e-5)


def test_path_layers_need_pair_features_in_decode():
    import pytest

    g, inv, _ = _inputs("CCO")
    model = _model({"path_layers": 1}).eval()
    h, e, mu, _ = model.encode_graph(g.atom_feat, g.pair_feat, g.pair_i, g.pair_j, inv)
    with pytest.raises(ValueError, match="pair_feat"):
        model.decode(h, e, g.pair_i, g.pair_j, inv, mu.unsqueeze(0))


def test_global_latent_is_one_draw_per_molecule():
    """The global columns of the noise are read at each molecule's first atom only: changing
    them at any other atom changes nothing; changing them at the first atom changes the
    distances of the whole molecule; the per-atom columns still act per atom."""
    g, inv, eps = _inputs("CC(=O)Nc1ccc(O)cc1", k=1)
    model = _model({"global_latent": 3}).eval()
    args = (g.atom_feat, g.pair_feat, g.pair_i, g.pair_j, inv)
    with torch.no_grad():
        d0, _ = model.sample_distances(*args, eps, 1.0)
        other = eps.clone()
        other[:, 1:, 5:] += 3.0
        d1, _ = model.sample_distances(*args, other, 1.0)
        first = eps.clone()
        first[:, 0, 5:] += 3.0
        d2, _ = model.sample_distances(*args, first, 1.0)
    torch.testing.assert_close(d0, d1)
    assert (d0 - d2).abs().max() > 1e-3


def test_global_latent_kl_is_charged_once_per_molecule():
    """Two molecules in one flattened batch: the summed per-atom KL equals the per-atom KL of
    the atom columns plus one global KL per molecule (computed here from the heads)."""
    from rdconfvae.model.network import _gauss_kl
    from rdconfvae.train import collate, featurize_records

    recs = []
    for smi in ("CCO", "c1ccccc1O"):
        m = Chem.AddHs(Chem.MolFromSmiles(smi))
        from rdkit.Chem import AllChem

        AllChem.EmbedMolecule(m, randomSeed=1)
        recs.append(type("R", (), {"name": smi, "mol": m})())
    examples, _ = featurize_records(recs, 70)
    b = collate(examples)
    torch.manual_seed(0)
    model = _model({"global_latent": 2}, latent=6)
    eps = torch.randn(b.atom_feat.shape[0], 6)
    _, _, kl_prior, kl_post = model(
        b.atom_feat, b.pair_feat, b.pair_i, b.pair_j, b.inv_deg, b.ref_dist, eps
    )
    h, e, mu_p, lv_p = model.encode_graph(b.atom_feat, b.pair_feat, b.pair_i, b.pair_j, b.inv_deg)
    mu_q, lv_q = model.encode_posterior(h, e, b.pair_i, b.pair_j, b.inv_deg, b.ref_dist)
    atom = _gauss_kl(mu_q[:, :4], lv_q[:, :4], mu_p[:, :4], lv_p[:, :4]).sum()
    firsts = torch.tensor([0, examples[0].graph.num_atoms])
    glob = _gauss_kl(mu_q[firsts, 4:], lv_q[firsts, 4:], mu_p[firsts, 4:], lv_p[firsts, 4:])
    torch.testing.assert_close(kl_post.sum(), atom + glob.sum())
    torch.testing.assert_close(kl_prior.sum(), atom + glob.sum())
    # the global stats are the same on every atom of a molecule
    n0 = examples[0].graph.num_atoms
    assert torch.equal(mu_q[:n0, 4:], mu_q[:1, 4:].expand(n0, 2))


def test_gradients_reach_new_layers_through_the_solver():
    """The training loss (coordinates solved by SMACOF, RMSD to the reference; no distance
    NLL, no KL) sends gradient into the path layers and the global heads."""
    from rdkit.Chem import AllChem

    from rdconfvae.train import PRESETS, batch_loss, collate, featurize_records

    m = Chem.AddHs(Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1"))
    AllChem.EmbedMolecule(m, randomSeed=3)
    examples, _ = featurize_records([type("R", (), {"name": "x", "mol": m})()], 70)
    b = collate(examples)
    preset = PRESETS["tiny"]
    from dataclasses import replace

    preset = replace(preset, dist_weight=0.0, beta=0.0)
    torch.manual_seed(0)
    model = _model({"path_layers": 1, "global_latent": 2}, latent=4)
    loss, parts = batch_loss(model, b, preset, torch.randn(b.atom_feat.shape[0], 4))
    loss.backward()
    assert parts["rmsd"] > 0
    for name in ("paths.0.left.weight", "paths.0.out.1.weight", "post_global.0.2.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
