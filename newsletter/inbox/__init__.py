"""Replies, bounces, complaints and auto-replies back into the store."""
