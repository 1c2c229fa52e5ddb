"""ViT autoencoder with a memory module and coordinate attention (seed 002)."""
