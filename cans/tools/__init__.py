"""Tooling beside the training path: the speed benchmark, the data-loading benchmark and the
parameter / FLOP profile."""
