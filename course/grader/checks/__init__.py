"""One module of checks per exercise module; each check compares the learner's block with the reference."""
