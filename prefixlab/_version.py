"""The package version, in a module of its own so that any module can read it without
importing the package root (`prefixlab/__init__.py` imports most of the package).

pyproject.toml reads it from here (`[tool.setuptools.dynamic]`), so there is one source.
"""

__version__ = "0.1.0"
