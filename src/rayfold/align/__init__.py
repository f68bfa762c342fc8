"""Structure comparison (pure): the 3Di alphabet, candidate search, TM-align scoring."""
