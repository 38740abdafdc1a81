"""Fine-tuning under a mask: the training loop, its GPU fast path, and the MLM head warm-up."""
