"""How good a trained model's logits are on held-out images: accuracy, exact cross entropy, calibration."""
