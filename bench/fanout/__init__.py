"""Websocket fan-out benchmark: ``python -m bench.fanout`` (full, a few minutes) or ``--smoke``.

What it measures, per server configuration (each on a fresh PostgreSQL database
``onedoor_fanout``, the server processes pinned to CPU 0):

1. Setup over the API as an admin: N halls, each with one matter, one counter, a kiosk, a
   board device and a clerk who signs in and opens the counter.
2. A load-generator process pinned to CPU 1 opens B board websockets per hall
   (``/ws/halls/{id}/board?token=…`` with the ``websockets`` client, which offers
   permessage-deflate as browsers and ``onedoor board-client`` do), a bounded number of
   handshakes at a time, with retries. Every board reads every message and keeps a compact
   timeline: the seq, kind (snapshot or event) and receive time (``time.time()``) of each.
3. The parent process (also on CPU 1) makes calls at a steady total rate, round robin over the
   halls: the kiosk issues a ticket, the clerk calls next (when the HTTP answer arrives is
   recorded) and marks a no-show. Three events per call fan out to the hall's boards.
4. Per configuration:

   - latency per (board, TicketCalled event): when the board first showed the call, i.e. the
     receive time of its first message (event, or snapshot after a resync) with a seq at least
     the call's, minus the event's ``at`` (the server's clock at the change, inside the
     transaction, so this includes the commit and slightly *over*-states commit→delivery);
     p50/p99/max. The notes also give it minus the time the call-next answer arrived (which
     *under*-states it: the answer leaves after the commit and a second read, and is often
     later than the board) and minus the event's ``published_at`` (when the outbox relay
     claimed it: the fan-out part alone), both read from ``hall_events`` after the calls.
   - events lost: per board, every seq of its hall after its first snapshot must have arrived
     as an event or be covered by a later snapshot (seq ≤ the snapshot's); 0 is required.
   - resyncs: snapshots a board received after its first message (hub resync or overflow).
   - server memory per connection: the summed VmRSS of the server processes (and any
     children) after setup, before any board, versus with every board open and idle, divided
     by the boards; the next column is the same after the calls (buffers and compression
     windows touched by traffic).
   - CPU used during the calls by the server, the boards process, the caller and everything
     else on the machine (PostgreSQL, Redis and any other process), from /proc.

Configurations (the default runs the first two; ``--configs all`` runs every one):
``pg-1p`` is ``onedoor serve`` as it is; ``pg-redis-2p`` is two ``onedoor serve`` processes
sharing PostgreSQL and Redis, each hall's boards split over both and every call made through
the first, so half of every hall's boards get its events through Redis. The ``uvicorn-*``
configurations run ``uvicorn --factory queue_server.asgi:create_from_env`` with a given
``--ws`` implementation, with or without permessage-deflate, to compare the memory and CPU
per connection (``uvicorn-wsproto-nodeflate`` is skipped where ``wsproto`` is not importable);
``uvicorn-sansio-deflate-nct`` is a prototype (``serve_no_context_takeover``) that keeps
permessage-deflate but without context takeover, so idle connections hold no zlib state.

Targets (from the issue): p99 ≤ 100 ms and ≤ 20 KiB per connection; the output says whether
each was met. The report goes to stdout and bench/results/fanout.txt (server logs beside it).
Exit status 1 if a board lost an event, a websocket failed to connect (after retries) or was
dropped, a call got a non-2xx answer (5xx or other), or a configuration could not run.
"""
