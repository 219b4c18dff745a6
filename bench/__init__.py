"""`make bench`: what the proxy costs, next to direct, the blog recipe's setup and claude-code-router."""
