"""Bulk jobs behind the command line: exporting positions and rebalancing many accounts."""
