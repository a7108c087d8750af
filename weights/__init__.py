"""Shipped model weights (TorchScript) and their manifest; see rdconfvae.weights."""
