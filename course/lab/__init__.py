"""What the chapters use: data, training, metrics, FLOPs, plots, widgets, probes, the given networks, the
autoencoder, the conditioning variants and the profiles. Nothing here is an exercise."""
