"""The ConfVAE model: featurization, network, TorchScript export and the verified weights store."""
