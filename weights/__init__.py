"""Shipped model weights (TorchScript and safetensors state dict), their manifest and model card."""
