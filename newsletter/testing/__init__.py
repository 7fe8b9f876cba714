"""Test helpers that run real servers (importable by any test)."""
