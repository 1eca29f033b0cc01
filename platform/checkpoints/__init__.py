"""Reading reference mmdetection checkpoints and the platform's own checkpoint format."""
