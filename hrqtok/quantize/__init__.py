"""Quantization: the one residual walk (``residual``), the ways a level picks its code
(``nearest``, ``hypervq``), k-means (``kmeans``) and the registry of quantizers (``registry``).

This package's import is light (no torch): ``registry`` is read by configs and the CLI's help.
"""
