"""Test-only Lava Processes that fail on purpose (a model that raises, one that hangs).

Kept in their own package because Lava's compiler executes every module in the
directory of a Process to find its models.
"""
