"""Preloaded by a test server: a before-task hook that fails for tasks whose
id ends in 0, so that a test sees a failing hook named in the task's error."""

from coldoc_tasks.coldoc.server import worker_process


def refuse_some(task_id):
    if task_id.endswith('0'):
        raise RuntimeError('this hook refuses the task')


worker_process.BEFORE_TASK_HOOKS.append(refuse_some)
