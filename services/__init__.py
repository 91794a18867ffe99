"""The four services of the import pipeline; each imports shared, never another service."""
