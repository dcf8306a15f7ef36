import os

# The tests exercise the reference (the learner's stubs are graded explicitly, by path).
os.environ.setdefault("COURSE_SOLUTIONS", "1")
