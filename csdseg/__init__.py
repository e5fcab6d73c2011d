"""csdseg: weakly-supervised semantic segmentation with Cross-domain Semantic Decoupling."""
__version__ = "0.1.0"
