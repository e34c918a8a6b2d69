"""Config files: safe YAML with source positions, `--set` overrides, the schema, and located errors.

The names below load on first use: the layer classes annotate their arguments with `nnctl.config.values`,
and the schema is derived from those classes, so importing this package must not import the schema.
"""

_EXPORTS = {"ConfigError": "yamlfile", "ConfigIssue": "yamlfile", "Source": "yamlfile",
            "ResolvedConfig": "resolve", "load_config": "resolve"}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nnctl.config' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"nnctl.config.{_EXPORTS[name]}"), name)


__all__ = sorted(_EXPORTS)
