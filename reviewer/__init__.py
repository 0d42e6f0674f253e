"""The review engine: pure, sans-I/O. Data in, findings out."""
