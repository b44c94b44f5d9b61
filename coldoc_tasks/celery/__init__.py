"""The ``celery`` backend: tasks run by Celery workers."""
