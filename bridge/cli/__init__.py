"""The ``lambda-bridge`` commands: the only code that prints for humans or exits."""
