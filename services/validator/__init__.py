"""The validator service."""
