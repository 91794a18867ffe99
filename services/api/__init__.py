"""The HTTP API: sign-in, uploads, the Clients page, and the read side (job documents, reports, clients)."""
