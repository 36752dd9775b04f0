"""The memory bank (docs/method.md §3): entries from a frozen encoder, vector indexes, leakage-filtered retrieval."""
