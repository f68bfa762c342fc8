"""Clustering rules as pure functions over alignment results: first pass, linkage, cohesion, tables."""
