"""Training: what runs around `Sequential.fit`, such as the progress display (`progress.py`)."""
