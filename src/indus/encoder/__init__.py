"""INDUS encoders: model presets, masked-LM pretraining, MiniLMv2 distillation."""
