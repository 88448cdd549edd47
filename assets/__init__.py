"""The dashboard's static files and the demo model: package data of `neuron_atlas` (see `neuron_atlas.resources`)."""
