"""Import an AWS SAM template: functions and their event sources become a commented lambda-bridge config."""

from bridge.sam.importer import ImportResult, Mapping, import_template, parse_maps

__all__ = ["ImportResult", "Mapping", "import_template", "parse_maps"]
