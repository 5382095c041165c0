"""Utilities every layer may use (atomic writes, declarative validation); imports nothing heavy."""
