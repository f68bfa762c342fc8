"""Evaluation used by benchmarks and tests: domain-boundary scores, a chaining test set."""
