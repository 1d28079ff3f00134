"""Paper-style convergence figures read from the tidy trace CSV."""
