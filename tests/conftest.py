"""Shared pytest set-up: deterministic torch and small thread counts for the 2-core CI machine."""

import os

os.environ.setdefault("TVM_NUM_THREADS", "2")
