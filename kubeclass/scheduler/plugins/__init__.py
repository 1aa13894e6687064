"""Scheduler plugins, one per file, named as upstream's (plus RuntimeHandler, ours)."""
