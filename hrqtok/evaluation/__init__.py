"""Downstream evaluations of multitokens (HRQ paper §4, Appendix B/C)."""
