"""The network: TorchScript equals eager; the shipped file loads with torch.jit.load alone."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from rdkit import Chem

from rdconfvae import featurize as fz
from rdconfvae.export import script_model
from rdconfvae.model import ConfVAE, default_config
from rdconfvae.modelstore import load_model, weights_dir


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
