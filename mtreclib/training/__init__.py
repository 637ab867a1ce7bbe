"""Training a model: the experiment (data, model, run folder), the trainer loop, TensorBoard logs."""
