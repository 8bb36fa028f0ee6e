"""Generators: plain functions over rows (respond, self_instruct, critique_revise, pairwise)."""
