"""Kernels of the fast path: field embeddings, split first-layer products, fused ReLU+dropout, the
layers models are composed of."""
