"""Measurements: code usage and collisions (``usage``), the inspect reports (``reports``),
the quality gate and --codebook-size auto (``quality``), the inspect figure (``plots``),
closure MR / MAP (``ranking``) and a WordNet model's report (``hierarchy``)."""
