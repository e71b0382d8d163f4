"""Researcher-facing tools over a finished store: the timeline picture and the linear probe."""
