"""Cross-domain Semantic Decoupling (CSD, BMVC 2023): a plug-in to train-cam.

cooccurrence (which single-label image to paste), paste (the two pasted views), dataset (the
samples), consistency (per-cell distributions and KL terms), trainer (train-cam's hook). The
algorithm, every reading of an ambiguous point and the stability options: docs/csd.md.
"""
