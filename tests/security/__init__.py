"""Security tests: who may call what, on whose objects, with which tokens and bodies; and fuzzing."""
