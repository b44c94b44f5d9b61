"""The background task: it reads and writes through the ORM."""

import os

from django.utils import timezone

from .models import Computation


def prime_factors(number: int) -> list[int]:
    """The prime factors of ``number``, smallest first."""
    factors, divisor = [], 2
    while divisor * divisor <= number:
        while number % divisor == 0:
            factors.append(divisor)
            number //= divisor
        divisor += 1
    if number > 1:
        factors.append(number)
    return factors


def factorize(pk: int) -> list[int]:
    """Factorise computation ``pk`` and store the result in its row."""
    computation = Computation.objects.get(pk=pk)
    factors = prime_factors(computation.number)
    computation.factors = ' '.join(map(str, factors))
    computation.state = 'done'
    computation.worker_pid = os.getpid()
    computation.finished = timezone.now()
    computation.save(update_fields=['factors', 'state', 'worker_pid', 'finished'])
    return factors
