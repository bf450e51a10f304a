"""Operating the bot: logging, metrics, alerts, the status page and preflight checks."""
