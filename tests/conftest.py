"""Fixtures shared by the test folders (defined in the helper modules next to this file)."""

from recipe_helpers import one_thread, tiny_cifar  # noqa: F401 (pytest finds fixtures by name here)
