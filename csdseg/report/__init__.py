"""The pipeline's outputs for people: the baseline / control / CSD table and a self-contained HTML report."""
