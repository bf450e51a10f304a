"""The trading loop: engine, order planning, executors (async and replay), seatbelt, jobs, bars."""
