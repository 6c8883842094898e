"""Online booking's rules as plain Python: slots, the booking window, bookings and check-in.

Like ``queue_server.domain`` (whose opening hours, errors and event base it reuses), nothing
here touches a web framework, database or event loop. Everything that depends on the time
takes ``now`` (an aware UTC datetime) and, where local times matter, the hall's timezone.
"""
