"""Everything that talks to a model and measures it. Never imports textual, rich, tui or themes."""
