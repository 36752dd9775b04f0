"""RaSeRec: retrieval-augmented sequential recommendation (Zhao et al., arXiv 2412.18378)."""
