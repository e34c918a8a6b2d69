"""Config files: safe YAML with source positions, `--set` overrides, the schema, and located errors."""

from nnctl.config.resolve import ResolvedConfig, load_config
from nnctl.config.yamlfile import ConfigError, ConfigIssue, Source

__all__ = ["ConfigError", "ConfigIssue", "ResolvedConfig", "Source", "load_config"]
