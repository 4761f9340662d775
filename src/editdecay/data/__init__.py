"""Data: edit-request files and bundled datasets, corpora for statistics, instruction-tuning sets.

:data:`DATA_FILES_GUIDE` is the user guide to edit-request files (formats, examples, what is
reported for bad records), relative to the repository root.
"""

DATA_FILES_GUIDE = "docs/data-files.md"

__all__ = ["DATA_FILES_GUIDE"]
