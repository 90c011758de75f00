"""Helpers shared by the functions of the stack."""
