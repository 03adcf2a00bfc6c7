"""Official dataset layouts (one reader per layout) and the sample processing shared by evaluation and training."""
