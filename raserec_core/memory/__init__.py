"""The memory bank (SPEC §3): entries from a frozen encoder, vector indexes, leakage-filtered retrieval."""
