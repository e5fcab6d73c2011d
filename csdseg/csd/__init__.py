"""Cross-domain Semantic Decoupling (CSD, BMVC 2023): a plug-in to train-cam.

cooccurrence (which single-label image to paste, Algorithm 1), context_pairing (the same by
shared background: csdseg's extension, ``csd.pair_by=context``), pairing (which of the two),
paste (the two pasted views), dataset (the samples), consistency (per-cell distributions and KL
terms), counts (how much CSD ran), trainer (train-cam's hook). The algorithm, every reading of
an ambiguous point and the stability options: docs/csd.md.
"""
