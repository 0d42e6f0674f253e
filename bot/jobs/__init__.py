"""The job queue (SAQ): embedded SQLite backend or Redis, the worker, and the job functions."""

from bot.jobs.queue import FINISHED, JobPolicy, Jobs, JobState, JobView, Submission
from bot.jobs.worker import Task, TransientError, build_worker

__all__ = [
    "FINISHED",
    "JobPolicy",
    "JobState",
    "JobView",
    "Jobs",
    "Submission",
    "Task",
    "TransientError",
    "build_worker",
]
