"""editdecay: edit facts into causal LMs, fine-tune them, and measure which edits survive."""

__version__ = "0.1.0"
