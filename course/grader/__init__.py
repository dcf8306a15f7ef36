"""The grader: the exercise registry (`exercises`), running checks in the notebook and the shell (`grading`), the
sandbox that grades submissions (`sandbox`), and the checks with their kit (`checks/`)."""
