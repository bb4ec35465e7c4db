"""Studies: several recipes ("arms") x seeds run into one store and published as one results file."""
