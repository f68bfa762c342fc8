"""Domain-boundary scores used by benchmarks and tests."""
