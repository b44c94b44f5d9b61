"""The coldoc task server: the wire protocol (:mod:`.protocol`), the event
loop and its connections (:mod:`.server`), queues and workers
(:mod:`.workers`, :mod:`.worker_process`), the task table (:mod:`.tasks`),
the infofile (:mod:`.infofile`) and start-up (:mod:`.main`)."""
