"""Readers and validators for the standard formats indus consumes, and the named-dataset registry."""
