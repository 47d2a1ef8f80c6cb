"""Moved to ops.reports (operator views live beside the domain, not inside it). This name stays,
as the very same module, only until the code written against it (the web console) follows."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("ops.reports")
