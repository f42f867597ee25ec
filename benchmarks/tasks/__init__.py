"""Tasks: generated offline from a seed (digits, copy, reverse, sort, scan) or read from user
files (coco: the cs231n captioning HDF5 format; plain: captions JSON + features array).

Importing this package registers every task with `load_task`.
"""

from . import coco, digits, plain, scan, sequences  # noqa: F401  (registers tasks)
from .base import Example, TaskData, TaskError, Vocab, list_tasks, load_task

__all__ = ["Example", "TaskData", "TaskError", "Vocab", "list_tasks", "load_task"]
