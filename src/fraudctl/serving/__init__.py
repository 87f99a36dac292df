"""Online scoring: the scorer, its web app, and the Ray Serve deployment."""
