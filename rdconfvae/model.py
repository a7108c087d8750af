"""The ConfVAE network (pure torch, TorchScript-compatible).

    prior     p(z | G)     per-atom Gaussian from a message-passing trunk on the graph
    encoder   q(z | G, R)  the same trunk plus reference distances on every pair
    decoder   p(d | z, G)  log-normal over every heavy-atom pair distance

Message passing runs over all heavy-atom pairs with torch's native
``index_add_`` (no torch-scatter: slower on CPU here, no wheel for our torch,
and it would tie the TorchScript file to a compiled extension). Pair features
come from :mod:`rdconfvae.featurize`; the sizes are read from it, never set by hand.

The decoder predicts ``mu = E[log d]`` and ``log_sigma`` of log d per pair: far
pairs are less certain in absolute terms, and ``1 / (d sigma)^2`` is a natural
weight for the stress the solver minimises.

Shapes glossary: N atoms (all molecules of a batch, flattened), P pairs,
K samples, H hidden, Z latent, R radial basis functions.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ConfVAE", "PairLayer", "default_config"]


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
        ab = self.lin_atom(h)
        a = ab[:, : self.hidden]
        gate = torch.sigmoid(ab[:, self.hidden :])
        s = self.act(a.index_select(0, pair_i) + a.index_select(0, pair_j) + self.lin_pair(e))
        out = self.msg(s)
        m = out[:, : self.hidden]
        to_i = m * gate.index_select(0, pair_j)
        to_j = m * gate.index_select(0, pair_i)
        agg = torch.zeros_like(h).index_add_(0, pair_i, to_i).index_add_(0, pair_j, to_j)
        agg = agg * inv_deg.unsqueeze(-1)
        h = self.norm_atom(h + self.update(torch.cat([h, agg], dim=-1)))
        e = self.norm_pair(e + out[:, self.hidden :])
        return h, e


class ConfVAE(nn.Module):
    """Conditional VAE over heavy-atom pair distances."""

    def __init__(self, config: dict[str, float]) -> None:
        super().__init__()
        hidden = int(config["hidden"])
        latent = int(config["latent"])
        self.hidden = hidden
        self.latent = latent
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
            nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2 * latent)
        )
        self.dist_in = nn.Linear(self.num_rbf, hidden)
        self.encoder = nn.ModuleList(
            [PairLayer(hidden) for _ in range(int(config["encoder_layers"]))]
        )
        self.post_head = nn.Sequential(
            nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2 * latent)
        )
        self.z_in = nn.Linear(latent, hidden)
        self.decoder = nn.ModuleList(
            [PairLayer(hidden) for _ in range(int(config["decoder_layers"]))]
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
        return h, e, stats[:, : self.latent], stats[:, self.latent :].clamp(-8.0, 4.0)

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
        return stats[:, : self.latent], stats[:, self.latent :].clamp(-8.0, 4.0)

    @torch.jit.export
    def decode(
        self,
        h: torch.Tensor,
        e: torch.Tensor,
        pair_i: torch.Tensor,
        pair_j: torch.Tensor,
        inv_deg: torch.Tensor,
        z: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """p(d | z, G) for K latent samples of one graph (or one batch of graphs).

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
        for layer in self.decoder:
            hk, ek = layer(hk, ek, pi, pj, deg)
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
        z = mu_p.unsqueeze(0) + temperature * torch.exp(0.5 * logvar_p).unsqueeze(0) * eps
        mu, log_sigma = self.decode(h, e, pair_i, pair_j, inv_deg, z)
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

        Shapes:
            ref_dist (P,) Angstrom, eps (N, Z)
            returns mu_log_d (P,), log_sigma (P,), kl_prior (N,), kl_post (N,) in nats per atom
        """
        h, e, mu_p, logvar_p = self.encode_graph(atom_feat, pair_feat, pair_i, pair_j, inv_deg)
        mu_q, logvar_q = self.encode_posterior(h, e, pair_i, pair_j, inv_deg, ref_dist)
        z = mu_q + torch.exp(0.5 * logvar_q) * eps
        mu, log_sigma = self.decode(h, e, pair_i, pair_j, inv_deg, z.unsqueeze(0))
        # Both terms equal KL(q || p); their gradients differ: the first trains only the
        # prior, the second only the encoder (KL balancing, see train.batch_loss).
        kl_prior = _gauss_kl(mu_q.detach(), logvar_q.detach(), mu_p, logvar_p)
        kl_post = _gauss_kl(mu_q, logvar_q, mu_p.detach(), logvar_p.detach())
        return mu[0], log_sigma[0], kl_prior, kl_post
