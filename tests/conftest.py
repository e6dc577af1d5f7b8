"""Shared test configuration.

Under CI (``CI`` set) hypothesis runs derandomised, so a submission's CI result depends on the code
alone; locally it explores new examples on every run.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
