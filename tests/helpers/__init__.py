"""Helpers shared by ccq's host-side tests (installs, servers, HTTP, Claude Code)."""
