"""Training of the tiny MOVA on the demo world (issue 17)."""
