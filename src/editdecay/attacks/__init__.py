"""Malicious edits: plant them (`run.py`), probe them (`probes.py`, `score.py`), and follow them
through fine-tuning. Attack kinds: the fact backdoor (`backdoor.py`)."""
