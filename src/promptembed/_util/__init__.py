"""Small helpers every layer may use: optional imports, the input rule, unit norms.

Standard library and numpy only; nothing here imports another promptembed module.
"""
