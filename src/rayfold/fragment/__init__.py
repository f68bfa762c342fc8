"""Chains into compact, confident fragments (pure NumPy/SciPy): rules, spectral cuts, the unit stage."""
