"""A plugin whose import fails, as when its backend library is missing."""

import tracelet_fixtures_missing_dependency  # noqa: F401  # raises ModuleNotFoundError
