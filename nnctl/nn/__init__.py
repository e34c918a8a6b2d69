"""Model library: layers, losses, optimizers, metrics, Sequential."""
