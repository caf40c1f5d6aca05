"""Stand-in package for A1111's modules/textual_inversion."""
