"""Measurements: code usage and collisions (``usage``), the inspect reports (``reports``),
closure MR / MAP (``ranking``) and a WordNet model's report (``hierarchy``)."""
