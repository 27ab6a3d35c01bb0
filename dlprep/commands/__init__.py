"""CLI command modules; each exports COMMANDS (registered in dlprep.cli)."""
