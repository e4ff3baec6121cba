"""hrqtok: hierarchical multitokens (semantic IDs) with Hyperbolic Residual Quantization."""

__version__ = "0.1.0"
