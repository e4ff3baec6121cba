"""Quantization: the one residual walk (``residual``), the ways a level picks its code
(``nearest``, ``hypervq``; protocol in ``levels``), balanced assignment (``balance``), k-means
(``kmeans``), the registry of quantizers (``registry``) and its factory (``build``).

This package's import is light (no torch): ``registry`` is read by configs and the CLI's help.
"""
