"""hrqtok: hierarchical multitokens (semantic IDs) with Hyperbolic Residual Quantization.

    import hrqtok
    tok = hrqtok.Tokenizer.fit(vectors, quantizer="hrq", levels=3, codebook_size=256, seed=0)
    table = tok.encode(vectors, ids=ids)
    tok.save("model-dir"); tok = hrqtok.Tokenizer.load("model-dir")

The package's import is light: torch and the rest load when ``Tokenizer`` is first used.
"""

__version__ = "0.1.0"

__all__ = ["Tokenizer", "TokenTable", "load", "read_tokens", "__version__"]


def __getattr__(name: str):
    # lazy, so that `import hrqtok` (and the CLI's --help) does not import torch
    if name in ("Tokenizer", "load", "read_tokens"):
        from hrqtok import api

        return getattr(api, name)
    if name == "TokenTable":
        from hrqtok.store.tables import TokenTable

        return TokenTable
    raise AttributeError(f"module 'hrqtok' has no attribute {name!r}")
