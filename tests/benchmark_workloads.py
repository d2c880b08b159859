"""Importable workloads for the harness test (a spawned process must be able to import them)."""

import time

import numpy as np


def allocate(mb: int) -> dict:
    block = np.ones(mb * 2**20 // 8)
    return {"allocated_mb": int(block.nbytes // 2**20)}


def fail() -> dict:
    raise ValueError("on purpose")


def sleep(seconds: float) -> dict:
    time.sleep(seconds)
    return {}
