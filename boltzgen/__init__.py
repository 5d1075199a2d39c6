"""boltzgen: Boltzmann generators and the baselines they must beat."""
