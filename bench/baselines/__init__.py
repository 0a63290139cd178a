"""Baselines the bench compares Conclave with."""
