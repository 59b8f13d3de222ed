"""The recipes: LightningModules, the CLI and `make demo` (see each submodule)."""

__all__: list[str] = []
