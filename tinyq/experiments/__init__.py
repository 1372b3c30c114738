"""Experiments: sweeps that return plain records (a list of dicts), print them as tables, save JSON/CSV and plot."""
