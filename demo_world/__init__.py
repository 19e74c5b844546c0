"""A synthetic talking world for training and measuring the tiny MOVA (issue 17)."""
