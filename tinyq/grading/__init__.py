"""Exercises and grading: the exercise list, the student-copy generator, the trusted grader."""
from .exercises import Exercise, all_prerequisites, load_exercises
from .grader import GradingError, check_timeout, format_report, grade, reference_root
from .student import MarkerError, make_student_copy

__all__ = ["Exercise", "GradingError", "MarkerError", "all_prerequisites", "check_timeout", "format_report",
           "grade", "load_exercises", "make_student_copy", "reference_root"]
