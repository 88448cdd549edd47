"""The engine both sides run: model loading, unit sites, hooks, recording, tasks and examples, interventions, unit
traces, audio I/O, TTS, metrics and concept statistics. It imports nothing from backend, precompute, app or the CLI."""
