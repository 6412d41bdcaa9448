"""Course tools: make a student copy of the scripts (make_assignment) and grade one (grade)."""
