"""AWS-shaped event builders: pure functions of data, one module per AWS shape."""
