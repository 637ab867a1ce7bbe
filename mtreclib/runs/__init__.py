"""A run folder's files: checkpoints and the results record, written and read by the same classes."""
