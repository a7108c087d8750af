"""The ConfVAE network (pure torch, TorchScript-compatible).

    prior     p(z | G)     per-atom Gaussian from a message-passing trunk on the graph
    encoder   q(z | G, R)  the same trunk plus reference distances on every pair
    decoder   p(d | z, G)  log-normal over every heavy-atom pair distance

Message passing runs over all heavy-atom pairs with torch's native
``index_add_`` (no torch-scatter: slower on CPU here, no wheel for our torch,
and it would tie the TorchScript file to a compiled extension). Pair features
come from :mod:`rdconfvae.model.featurize`; the sizes are read from it, never set by hand.

The decoder predicts ``mu = E[log d]`` and ``log_sigma`` of log d per pair: far
pairs are less certain in absolute terms, and ``1 / (d sigma)^2`` is a natural
weight for the stress the solver minimises.

Shapes glossary: N atoms (all molecules of a batch, flattened), P pairs,
K samples, H hidden, Z latent, R radial basis functions, T bond-path triples.

Options (config keys; absent or 0 builds the shipped architecture, parameter for
parameter, so the shipped weights load):

* ``path_layers``: the first ``path_layers`` decoder layers are each followed by a
  :class:`PathLayer`, which composes pair states along bonds (a triangle update
  restricted to triangles with one bond edge), ``path_iters`` times with shared weights.
  In the plain decoder the pair (i, j) hears only the two atoms' states, which average
  over all pairs, so the latents of the atoms *between* i and j (the torsions that set
  their distance) reach it diluted; a path layer passes them along the bonds.
* ``global_latent``: the last G of the ``latent`` noise columns drive one latent per
  molecule (pooled encoder / trunk states; the noise is read at the molecule's first
  atom), beside the per-atom latent of ``latent - G`` dimensions. Callers draw noise of
  width ``latent`` as before.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ConfVAE", "PairLayer", "PathLayer", "bond_paths", "default_config"]


def default_config(atom_dim: int, pair_dim: int) -> dict[str, float]:
    """Architecture hyper-parameters; feature sizes come from the featurizer."""
    return {
        "atom_dim": atom_dim,
        "pair_dim": pair_dim,
        "hidden": 128,
        "latent": 8,
        "trunk_layers": 4,
        "encoder_layers": 2,
        "decoder_layers": 2,
        "rbf": 32,
        "rbf_cutoff": 20.0,
    }


def _gauss_kl(
    mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor
) -> torch.Tensor:
    """KL(N(mu_q, var_q) || N(mu_p, var_p)) summed over the last dim, nats. (N, Z) -> (N,)."""
    return 0.5 * (
        logvar_p
        - logvar_q
        + (torch.exp(logvar_q) + (mu_q - mu_p).pow(2)) / torch.exp(logvar_p)
        - 1.0
    ).sum(-1)


class PairLayer(nn.Module):
    """One round of messages over all pairs, updating atom and pair states.

    The pair state s_ij = act(A h_i + A h_j + C e_ij) is symmetric; the message to
    atom i is W s_ij gated by B h_j (and to j by B h_i), so each layer costs two
    (P, H) x (H, H) products. Gathers use ``index_select`` and sums ``index_add_``
    (whose backward passes are fast on CPU, unlike advanced indexing).

    Shapes:
        h: (N, H) atoms, e: (P, H) pairs, pair_i / pair_j: (P,), inv_deg: (N,)
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.lin_atom = nn.Linear(hidden, 2 * hidden)
        self.lin_pair = nn.Linear(hidden, hidden, bias=False)
        self.msg = nn.Linear(hidden, 2 * hidden)
        self.update = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )
        self.norm_atom = nn.LayerNorm(hidden)
        self.norm_pair = nn.LayerNorm(hidden)
        self.act = nn.SiLU()
        self.hidden = hidden

    def forward(
        self,
        h: torch.Tensor,
        e: torch.Tensor,
        pair_i: torch.Tensor,
        pair_j: torch.Tensor,
        inv_deg: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # split, not slicing: its backward concatenates the two gradients instead of
        # filling a zero tensor per slice: the same gradients, ~6 % less time per training step
        a, gate_in = self.lin_atom(h).split(self.hidden, dim=-1)
        gate = torch.sigmoid(gate_in)
        s = self.act(a.index_select(0, pair_i) + a.index_select(0, pair_j) + self.lin_pair(e))
        m, pair_out = self.msg(s).split(self.hidden, dim=-1)
        to_i = m * gate.index_select(0, pair_j)
        to_j = m * gate.index_select(0, pair_i)
        agg = torch.zeros_like(h).index_add_(0, pair_i, to_i).index_add_(0, pair_j, to_j)
        agg = agg * inv_deg.unsqueeze(-1)
        h = self.norm_atom(h + self.update(torch.cat([h, agg], dim=-1)))
        e = self.norm_pair(e + pair_out)
        return h, e


def bond_paths(
    pair_feat: torch.Tensor, pair_i: torch.Tensor, pair_j: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index triples of the bond-path update: pair ``dst`` = (a, b) hears pair ``src`` =
    (a, c) through the bond pair ``via`` = (b, c), for every bond (b, c) with c != a, and
    the same with a and b swapped. Bonds are the pairs at topological distance 1 (the first
    pair feature, :mod:`rdconfvae.model.featurize`). Needs every molecule's pairs to be complete
    (as the featurizer and ``train.collate`` make them).

    Shapes:
        pair_feat (P, F_pair), pair_i / pair_j (P,), n atoms in all
        returns src, via, dst (T,) pair indices and inv_count (P,) = 1 / (triples into a pair)
    """
    p = pair_i.shape[0]
    dev = pair_i.device
    pid = torch.full((n, n), -1, dtype=torch.long, device=dev)
    ar = torch.arange(p, device=dev)
    pid[pair_i, pair_j] = ar
    pid[pair_j, pair_i] = ar
    bonded = pair_feat[:, 0] > 0.5
    bi = pair_i[bonded]
    bj = pair_j[bonded]
    bid = ar[bonded]
    start = torch.cat([bi, bj])  # directed bonds start -> end
    end = torch.cat([bj, bi])
    bond_pid = torch.cat([bid, bid])
    order = torch.argsort(start)
    counts = torch.bincount(start, minlength=n)
    first = torch.cumsum(counts, 0) - counts
    oa = torch.cat([pair_i, pair_j])  # ordered pairs (a, b), both orientations
    ob = torch.cat([pair_j, pair_i])
    opid = torch.cat([ar, ar])
    deg = counts.index_select(0, ob)
    rep = torch.repeat_interleave(torch.arange(2 * p, device=dev), deg)
    offs = torch.cumsum(deg, 0) - deg
    within = torch.arange(rep.shape[0], device=dev) - offs.index_select(0, rep)
    bond = order.index_select(0, first.index_select(0, ob.index_select(0, rep)) + within)
    a = oa.index_select(0, rep)
    c = end.index_select(0, bond)
    keep = c != a
    src = pid[a[keep], c[keep]]
    via = bond_pid.index_select(0, bond)[keep]
    dst = opid.index_select(0, rep)[keep]
    cnt = torch.zeros(p, device=dev, dtype=pair_feat.dtype).index_add_(
        0, dst, torch.ones(dst.shape[0], device=dev, dtype=pair_feat.dtype)
    )
    return src, via, dst, 1.0 / cnt.clamp(min=1.0)


class PathLayer(nn.Module):
    """Pair states composed along bonds (see :func:`bond_paths`): the pair (a, b) sums
    ``L e_ac * R e_bc`` over the bonds (b, c) (and the mirror over the bonds of a), a
    triangle-multiplicative update on the triangles that contain one bond; gated residual.

    Shapes:
        e: (P, H) pairs; src, via, dst: (T,); inv_count: (P,); returns (P, H)
    """

    def __init__(self, hidden: int, iters: int = 1) -> None:
        super().__init__()
        self.left = nn.Linear(hidden, hidden)
        self.right = nn.Linear(hidden, hidden)
        self.gate = nn.Linear(hidden, hidden)
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden))
        self.norm = nn.LayerNorm(hidden)
        self.iters = iters

    def forward(
        self,
        e: torch.Tensor,
        src: torch.Tensor,
        via: torch.Tensor,
        dst: torch.Tensor,
        inv_count: torch.Tensor,
    ) -> torch.Tensor:
        for _ in range(self.iters):
            msg = self.left(e).index_select(0, src) * self.right(e).index_select(0, via)
            agg = torch.zeros_like(e).index_add_(0, dst, msg) * inv_count.unsqueeze(-1)
            e = self.norm(e + torch.sigmoid(self.gate(e)) * self.out(agg))
        return e


def _first_atom(pair_i: torch.Tensor, pair_j: torch.Tensor, n: int) -> torch.Tensor:
    """(N,) index of the first atom of each atom's molecule: molecules are contiguous and
    every pair of a molecule is present, so it is the smallest partner (or the atom)."""
    ar = torch.arange(n, device=pair_i.device)
    return ar.scatter_reduce(0, pair_j, pair_i, reduce="amin", include_self=True)


class ConfVAE(nn.Module):
    """Conditional VAE over heavy-atom pair distances."""

    def __init__(self, config: dict[str, float]) -> None:
        super().__init__()
        hidden = int(config["hidden"])
        latent = int(config["latent"])
        self.hidden = hidden
        self.latent = latent
        self.global_latent = int(config.get("global_latent", 0))
        if not 0 <= self.global_latent < latent:
            raise ValueError(f"global_latent must lie in [0, latent={latent})")
        atom_latent = latent - self.global_latent
        self.atom_latent = atom_latent
        self.num_rbf = int(config["rbf"])
        self.rbf_cutoff = float(config["rbf_cutoff"])
        self.atom_in = nn.Sequential(
            nn.Linear(int(config["atom_dim"]), hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )
        self.pair_in = nn.Sequential(
            nn.Linear(int(config["pair_dim"]), hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )
        self.trunk = nn.ModuleList([PairLayer(hidden) for _ in range(int(config["trunk_layers"]))])
        self.prior_head = nn.Sequential(
            nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2 * atom_latent)
        )
        self.dist_in = nn.Linear(self.num_rbf, hidden)
        self.encoder = nn.ModuleList(
            [PairLayer(hidden) for _ in range(int(config["encoder_layers"]))]
        )
        self.post_head = nn.Sequential(
            nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2 * atom_latent)
        )
        self.z_in = nn.Linear(latent, hidden)
        self.decoder = nn.ModuleList(
            [PairLayer(hidden) for _ in range(int(config["decoder_layers"]))]
        )
        self.path_layers = int(config.get("path_layers", 0))
        self.paths = nn.ModuleList(
            [PathLayer(hidden, int(config.get("path_iters", 1))) for _ in range(self.path_layers)]
        )
        glob = max(self.global_latent, 1)  # unused (and empty) without a global latent
        self.prior_global = nn.ModuleList(
            [
                nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2 * glob))
                for _ in range(int(self.global_latent > 0))
            ]
        )
        self.post_global = nn.ModuleList(
            [
                nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2 * glob))
                for _ in range(int(self.global_latent > 0))
            ]
        )
        self.out_atom = nn.Linear(hidden, hidden)
        self.dist_head = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2))
        centers = torch.linspace(0.0, self.rbf_cutoff, self.num_rbf)
        self.register_buffer("rbf_centers", centers)
        self.rbf_gamma = 1.0 / float((centers[1] - centers[0]) ** 2)

    def _rbf(self, dist: torch.Tensor) -> torch.Tensor:
        """(P,) Angstrom -> (P, R) Gaussian basis."""
        centers = self.rbf_centers  # a buffer; torch types module attributes as Tensor | Module
        return torch.exp(-self.rbf_gamma * (dist.unsqueeze(-1) - centers).pow(2))  # type: ignore[operator]

    def _pooled(self, h: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """Mean atom state of each atom's molecule, (N, H)."""
        n = h.shape[0]
        cnt = torch.zeros(n, dtype=h.dtype, device=h.device).index_add_(
            0, first, torch.ones(n, dtype=h.dtype, device=h.device)
        )
        pooled = torch.zeros_like(h).index_add_(0, first, h) / cnt.clamp(min=1.0).unsqueeze(-1)
        return pooled.index_select(0, first)

    def _shared_noise(self, eps: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """Noise (..., N, Z) whose global columns are those of each molecule's first atom."""
        if self.global_latent == 0:
            return eps
        a = self.atom_latent
        return torch.cat([eps[..., :a], eps.index_select(-2, first)[..., a:]], dim=-1)

    @torch.jit.export
    def encode_graph(
        self,
        atom_feat: torch.Tensor,
        pair_feat: torch.Tensor,
        pair_i: torch.Tensor,
        pair_j: torch.Tensor,
        inv_deg: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Graph trunk and prior p(z | G).

        Shapes:
            atom_feat (N, F_atom), pair_feat (P, F_pair), pair_i / pair_j (P,), inv_deg (N,)
            returns h (N, H), e (P, H), prior_mu (N, Z), prior_logvar (N, Z)
        """
        h = self.atom_in(atom_feat)
        e = self.pair_in(pair_feat)
        for layer in self.trunk:
            h, e = layer(h, e, pair_i, pair_j, inv_deg)
        stats = self.prior_head(h)
        a = self.atom_latent
        mu, logvar = stats[:, :a], stats[:, a:].clamp(-8.0, 4.0)
        if self.global_latent > 0:
            first = _first_atom(pair_i, pair_j, h.shape[0])
            pooled = self._pooled(h, first)
            stats_g = torch.zeros(h.shape[0], 2 * self.global_latent, device=h.device)
            for head in self.prior_global:
                stats_g = head(pooled)
            mu_g = stats_g[:, : self.global_latent]
            logvar_g = stats_g[:, self.global_latent :].clamp(-8.0, 4.0)
            mu = torch.cat([mu, mu_g], dim=-1)
            logvar = torch.cat([logvar, logvar_g], dim=-1)
        return h, e, mu, logvar

    @torch.jit.export
    def encode_posterior(
        self,
        h: torch.Tensor,
        e: torch.Tensor,
        pair_i: torch.Tensor,
        pair_j: torch.Tensor,
        inv_deg: torch.Tensor,
        ref_dist: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | G, R) from the trunk states and the reference distances (P,), Angstrom."""
        e = e + self.dist_in(self._rbf(ref_dist))
        for layer in self.encoder:
            h, e = layer(h, e, pair_i, pair_j, inv_deg)
        stats = self.post_head(h)
        a = self.atom_latent
        mu, logvar = stats[:, :a], stats[:, a:].clamp(-8.0, 4.0)
        if self.global_latent > 0:
            first = _first_atom(pair_i, pair_j, h.shape[0])
            pooled = self._pooled(h, first)
            stats_g = torch.zeros(h.shape[0], 2 * self.global_latent, device=h.device)
            for head in self.post_global:
                stats_g = head(pooled)
            mu_g = stats_g[:, : self.global_latent]
            logvar_g = stats_g[:, self.global_latent :].clamp(-8.0, 4.0)
            mu = torch.cat([mu, mu_g], dim=-1)
            logvar = torch.cat([logvar, logvar_g], dim=-1)
        return mu, logvar

    @torch.jit.export
    def decode(
        self,
        h: torch.Tensor,
        e: torch.Tensor,
        pair_i: torch.Tensor,
        pair_j: torch.Tensor,
        inv_deg: torch.Tensor,
        z: torch.Tensor,
        pair_feat: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """p(d | z, G) for K latent samples of one graph (or one batch of graphs).

        ``pair_feat`` (the graph's pair features) is needed only with path layers.

        Shapes:
            h (N, H), e (P, H), pair_i / pair_j (P,), inv_deg (N,), z (K, N, Z)
            returns mu_log_d (K, P) and log_sigma (K, P) of log-distances (log Angstrom)
        """
        k = z.shape[0]
        n = h.shape[0]
        p = e.shape[0]
        hk = (h.unsqueeze(0) + self.z_in(z)).reshape(k * n, self.hidden)
        ek = e.unsqueeze(0).expand(k, p, self.hidden).reshape(k * p, self.hidden)
        offset = (torch.arange(k, device=h.device) * n).unsqueeze(-1)
        pi = (pair_i.unsqueeze(0) + offset).reshape(-1)
        pj = (pair_j.unsqueeze(0) + offset).reshape(-1)
        deg = inv_deg.repeat(k)
        src = via = dst = torch.zeros(0, dtype=torch.long, device=h.device)
        inv_count = torch.zeros(0, dtype=h.dtype, device=h.device)
        if self.path_layers > 0:
            if pair_feat is None:
                raise ValueError("decode: this model's path layers need pair_feat")
            src1, via1, dst1, inv1 = bond_paths(pair_feat, pair_i, pair_j, n)
            shift = (torch.arange(k, device=h.device) * p).unsqueeze(-1)
            src = (src1.unsqueeze(0) + shift).reshape(-1)
            via = (via1.unsqueeze(0) + shift).reshape(-1)
            dst = (dst1.unsqueeze(0) + shift).reshape(-1)
            inv_count = inv1.repeat(k)
        for li, layer in enumerate(self.decoder):
            hk, ek = layer(hk, ek, pi, pj, deg)
            for lp, path in enumerate(self.paths):
                if lp == li:
                    ek = path(ek, src, via, dst, inv_count)
        a = self.out_atom(hk)
        out = self.dist_head(ek + a.index_select(0, pi) + a.index_select(0, pj)).reshape(k, p, 2)
        mu = out[..., 0] + math.log(4.0)
        log_sigma = out[..., 1].clamp(-6.0, 1.0) - 2.0
        return mu, log_sigma

    @torch.jit.export
    def sample_distances(
        self,
        atom_feat: torch.Tensor,
        pair_feat: torch.Tensor,
        pair_i: torch.Tensor,
        pair_j: torch.Tensor,
        inv_deg: torch.Tensor,
        eps: torch.Tensor,
        temperature: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: distances for K prior samples of one molecule.

        ``eps`` (K, N, Z) is standard normal noise drawn by the caller, so the
        random stream is the caller's (same seed -> same output, any thread count).

        Shapes: returns distance (K, P) in Angstrom and log_sigma (K, P).
        """
        h, e, mu_p, logvar_p = self.encode_graph(atom_feat, pair_feat, pair_i, pair_j, inv_deg)
        if self.global_latent > 0:
            eps = self._shared_noise(eps, _first_atom(pair_i, pair_j, h.shape[0]))
        z = mu_p.unsqueeze(0) + temperature * torch.exp(0.5 * logvar_p).unsqueeze(0) * eps
        mu, log_sigma = self.decode(h, e, pair_i, pair_j, inv_deg, z, pair_feat)
        return torch.exp(mu), log_sigma

    def forward(
        self,
        atom_feat: torch.Tensor,
        pair_feat: torch.Tensor,
        pair_i: torch.Tensor,
        pair_j: torch.Tensor,
        inv_deg: torch.Tensor,
        ref_dist: torch.Tensor,
        eps: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass on a flattened batch with one posterior sample per molecule.

        With a global latent its KL is charged once per molecule, at the first atom.

        Shapes:
            ref_dist (P,) Angstrom, eps (N, Z)
            returns mu_log_d (P,), log_sigma (P,), kl_prior (N,), kl_post (N,) in nats per atom
        """
        h, e, mu_p, logvar_p = self.encode_graph(atom_feat, pair_feat, pair_i, pair_j, inv_deg)
        mu_q, logvar_q = self.encode_posterior(h, e, pair_i, pair_j, inv_deg, ref_dist)
        if self.global_latent > 0:
            eps = self._shared_noise(eps, _first_atom(pair_i, pair_j, h.shape[0]))
        z = mu_q + torch.exp(0.5 * logvar_q) * eps
        mu, log_sigma = self.decode(h, e, pair_i, pair_j, inv_deg, z.unsqueeze(0), pair_feat)
        # Both terms equal KL(q || p); their gradients differ: the first trains only the
        # prior, the second only the encoder (KL balancing, see train.batch_loss).
        if self.global_latent == 0:
            kl_prior = _gauss_kl(mu_q.detach(), logvar_q.detach(), mu_p, logvar_p)
            kl_post = _gauss_kl(mu_q, logvar_q, mu_p.detach(), logvar_p.detach())
        else:
            a = self.atom_latent
            first = _first_atom(pair_i, pair_j, h.shape[0])
            is_first = (first == torch.arange(h.shape[0], device=h.device)).to(h.dtype)
            kl_prior = _split_kl(mu_q.detach(), logvar_q.detach(), mu_p, logvar_p, a, is_first)
            kl_post = _split_kl(mu_q, logvar_q, mu_p.detach(), logvar_p.detach(), a, is_first)
        return mu[0], log_sigma[0], kl_prior, kl_post


def _split_kl(
    mu_q: torch.Tensor,
    logvar_q: torch.Tensor,
    mu_p: torch.Tensor,
    logvar_p: torch.Tensor,
    a: int,
    is_first: torch.Tensor,
) -> torch.Tensor:
    """Per-atom KL of the first ``a`` columns plus the global columns' KL at first atoms."""
    atom = _gauss_kl(mu_q[:, :a], logvar_q[:, :a], mu_p[:, :a], logvar_p[:, :a])
    glob = _gauss_kl(mu_q[:, a:], logvar_q[:, a:], mu_p[:, a:], logvar_p[:, a:])
    return atom + glob * is_first
