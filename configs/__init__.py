"""Configuration data (YAML). Nothing executable lives here; see engine.config."""
