"""Training 3DGS (and CompGS on top of it): parameters, densification, losses, the loop."""
