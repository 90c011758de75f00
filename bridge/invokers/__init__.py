"""Invokers: the only code that talks to functions (local workers or remote Lambda)."""
