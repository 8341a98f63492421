"""Quantization: primitives, k-means, linear PTQ/QAT, BN folding, integer-only reference, mixed precision."""
