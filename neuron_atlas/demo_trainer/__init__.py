"""The project's own small trained SeamlessM4Tv2 demo model: corpus grammar, data, training, evaluation, card."""
