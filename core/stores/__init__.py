"""Checkpoint store implementations that need no cloud SDK (cloud ones live in handlers/)."""
