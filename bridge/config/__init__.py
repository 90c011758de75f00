"""The config file: YAML to frozen pydantic models, with errors that say how to fix them."""
