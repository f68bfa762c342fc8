"""Statistics, sampling weights, plots and the HTML report of a run folder."""
