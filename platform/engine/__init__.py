"""Training and inference loops (single process; distribution is applied from outside)."""
