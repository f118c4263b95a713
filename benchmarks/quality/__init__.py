"""Quality: STS-B and SciFact scores of templates, boosters, tuning and hybrid retrieval."""
