"""conv's built-in methods, one module each. They are registered through the
``conv.methods`` entry points in pyproject.toml, exactly like a third party's."""
