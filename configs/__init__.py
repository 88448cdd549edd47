"""Run configs shipped as package data of `neuron_atlas` (see `neuron_atlas.resources.config_path`)."""
