"""COBRA-patch: COBRA's opposite pairs and adversarial training, applied to local features."""
