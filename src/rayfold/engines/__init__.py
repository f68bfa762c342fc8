"""Where first-pass clusters and candidates come from besides the built-in search: Foldseek."""
