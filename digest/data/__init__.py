"""Data files shipped with digest (see README.md here for where each comes from)."""
