"""Models: Möbius and Euclidean layers, the item autoencoders ((H)RQ-VAE, residual k-means) and
the WordNet hierarchy model (an embedding table with its quantizer)."""
