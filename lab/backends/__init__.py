"""Backends bring a topology up: ``netns`` (embedded) and ``kind``."""
