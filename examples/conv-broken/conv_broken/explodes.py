"""An entry point whose module cannot be imported."""
raise RuntimeError("deliberately broken")

METHOD = None  # never reached
