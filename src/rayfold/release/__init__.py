"""`rayfold run`: releases, the manifest, the input filter, the run lock."""
