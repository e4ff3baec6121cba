"""Fitting: item models (``items``), WordNet embeddings with their codebooks (``hierarchy``),
the contrastive ranking loss (``contrastive``) and dead-code revival (``revival``)."""
