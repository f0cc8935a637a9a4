"""The runnable demonstration used by `make demo`: a shop checkout under load and faults."""
