"""The grader: the exercise registry (`exercises`), running checks in the notebook and the shell (`grading`), the
sandbox that grades submissions (`sandbox`), the wire between its checker and the learner's process (`bridge`), and
the checks with their kit (`checks/`)."""
