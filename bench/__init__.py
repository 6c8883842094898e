"""OneDoor load benchmark: ``python -m bench.run`` (``--smoke`` for CI).

Each configuration starts a fresh server, fills a hall, issues tickets from many concurrent
clients, then drains the queue from 20 counters, and checks that nothing was lost or doubled.
"""
