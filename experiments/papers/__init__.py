"""One module per paper: TITLE and run(out, quick) -> list[Claim] (see experiments/claims.py)."""
