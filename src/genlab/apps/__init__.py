"""Applications of trained models (interpolation for now; more come with `genlab apply`)."""
