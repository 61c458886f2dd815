"""Rewrites of a network, one module per strategy; each plans a change and applies it to a copy."""
