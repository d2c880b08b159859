"""Dagster assets and asset checks: thin wrappers over ``models`` that attach UI metadata."""
