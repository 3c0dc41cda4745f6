"""One-off questions about the study's models; results in docs/results/probe-*."""
