"""The only package that imports Ray: sessions, actor pools, batched tasks."""
