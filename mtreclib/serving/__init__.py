"""Using a trained model: loading, scoring, evaluating, streaming predictions, exporting."""
