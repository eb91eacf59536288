"""Ledger backends: mock (in-process), and the real ones beside it."""
