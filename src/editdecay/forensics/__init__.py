"""Forensics: finding an edit in a model from its weights (`weights.py`)."""
