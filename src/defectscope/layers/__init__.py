"""Blocks shared by two or more models."""
