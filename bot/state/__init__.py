"""The bot's durable state: the SQLite store, its history views and the heartbeat file."""
