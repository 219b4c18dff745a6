"""`make bench`: what the proxy costs, next to direct, the seed's setup and claude-code-router."""
