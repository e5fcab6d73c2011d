"""The pipeline's outputs for people: the baseline-vs-CSD table and a self-contained HTML report."""
