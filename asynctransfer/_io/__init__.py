"""Thin drivers: each wraps one library (aiobotocore, the OS) and converts its errors."""
