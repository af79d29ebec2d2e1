"""ovbench's torch engine (see engines/torch/engine.py and docs/engines.md)."""
