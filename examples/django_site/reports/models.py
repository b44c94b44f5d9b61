"""A computation scheduled by a view and done by a background task."""

from django.db import models


class Computation(models.Model):
    """The prime factors of ``number``, written by the task that found them."""

    number = models.PositiveBigIntegerField()
    state = models.CharField(max_length=16, default='scheduled')  # scheduled, done, failed
    factors = models.CharField(max_length=400, blank=True)
    #: the backend the view used (coldoc, celery, simple, nofork)
    backend = models.CharField(max_length=16, blank=True)
    web_pid = models.IntegerField(null=True)
    worker_pid = models.IntegerField(null=True)
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True)
    #: the pickled fork object: any web process can wait for the task with it
    fork = models.BinaryField(null=True)

    class Meta:
        ordering = ['-id']

    def __str__(self) -> str:
        return f'{self.number}: {self.state}'
