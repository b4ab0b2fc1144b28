"""A deliberately broken conv.methods plugin (see README.md). Importing the package itself is fine."""
