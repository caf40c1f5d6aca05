"""Helpers shared by the tests (reference computations, small models, file writers)."""
