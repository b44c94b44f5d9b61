"""The live status page of a coldoc task server.

::

    page.py        the page (static/: HTML, CSS, a little JavaScript) and its headers
    data.py        what the page shows, from the task server (the JSON of /api/status); terminate
    metrics.py     the same counters and gauges as Prometheus text
    token.py       the page's token, derived from the server's key
    hosts.py       the host names a request may give (against DNS rebinding)
    app.py         the addresses and their answers; the checks of every request
    standalone.py  coldoc_tasks_cli coldoc web: a standard-library HTTP server
    django_views.py django_urls.py   the same page in a Django site, for staff users
"""
