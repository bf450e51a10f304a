"""Replay and research: the replay driver, its report and chart, grids and check-order."""
