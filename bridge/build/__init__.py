"""Function environments: dependencies from a manifest, layers, the interpreter and the runtime SDK."""
