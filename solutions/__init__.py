"""The reference exercise modules: the single source of truth from which `course/`'s modules are generated."""
