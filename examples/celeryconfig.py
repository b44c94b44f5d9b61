"""A Celery configuration for coldoc_tasks, with Redis as broker and result backend.

Use it with

    coldoc_tasks_cli celery daemon examples/celeryconfig.py worker.log
    coldoc_tasks_cli celery test examples/celeryconfig.py

or, from Python, ``coldoc_tasks.celery_tasks.fork_class(celeryconfig='examples/celeryconfig.py')``.

coldoc_tasks only reads this file, never writes it.  Any Celery setting may go
here (https://docs.celeryq.dev/en/stable/userguide/configuration.html).
"""

# The broker carries the tasks to the workers.  Redis, on this machine, database 0.
# For RabbitMQ instead: 'amqp://USER:PASSWORD@HOST:5672//'.
broker_url = 'redis://127.0.0.1:6379/0'

# Where the workers store results.  coldoc_tasks needs a result backend, and
# works best with Redis: a task waiting for a subtask nobody has started yet
# can then run it itself (see docs/celery.md), and terminate() can stop a task
# that is still queued.  Keep it Redis even when the broker is RabbitMQ.
result_backend = 'redis://127.0.0.1:6379/0'

# Results nobody collected are dropped after this many seconds.  A fork object
# must wait for its task within this time (also from another process).
result_expires = 24 * 3600

# coldoc_tasks sends pickled calls and results, and sets these three itself;
# they are written here so that the file says what the workers accept.
# Pickle means: whoever can write to the broker or the result backend can run
# code on the workers.  Use a broker and a result backend only you can reach
# (bound to 127.0.0.1 as above, or with a password and TLS).
task_serializer = 'pickle'
result_serializer = 'pickle'
accept_content = ['pickle', 'json']

# The queue tasks go to unless fork_class(queue=...) names another; a worker
# consumes it unless given --queue.
task_default_queue = 'coldoc_tasks'

# A worker takes one task at a time per pool process: long tasks do not wait
# behind each other in one worker while another worker is idle.
worker_prefetch_multiplier = 1

# Give up quickly when the broker is down, instead of retrying for a long time.
broker_connection_timeout = 2
broker_connection_retry_on_startup = True
