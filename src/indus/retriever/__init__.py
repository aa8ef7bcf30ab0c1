"""INDUS retrievers: GTE contrastive bi-encoders, DistillCSE students, and a faiss index to search them.

- :mod:`indus.retriever.losses`: ``GTELoss`` (arXiv 2308.03281, optional GradCache) and ``DistillCSELoss``
  (arXiv 2310.13499);
- :mod:`indus.retriever.train`: ``train_retriever(cfg, out_dir)``, one source per batch;
- :mod:`indus.retriever.distill`: ``distill_retriever(cfg, out_dir)``, teacher embeddings precomputed;
- :mod:`indus.retriever.bi_encoder`: the bi-encoder; students cut from a model's layers or built from a preset;
- :mod:`indus.retriever.index`: ``build_index`` / ``load_index`` / ``search`` (faiss, exact or HNSW).

Submodules are imported on use, so ``import indus.retriever`` stays cheap.
"""
