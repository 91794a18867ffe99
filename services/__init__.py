"""The services of the import pipeline: the HTTP API and the four stages. Each imports shared, never another service."""
