"""Sending an issue to every reader from the send log: the engine, its workers, its policy."""
