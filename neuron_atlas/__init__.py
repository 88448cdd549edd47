"""Neuron Atlas: neuron-level analysis of language and modality in SeamlessM4T v2."""
from neuron_atlas.engine.versions import ENGINE_VERSION, STORE_VERSION

__all__ = ["ENGINE_VERSION", "STORE_VERSION"]
