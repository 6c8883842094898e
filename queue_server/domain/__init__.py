"""The queue's rules as plain Python: no web framework, database, broker or event loop here.

Everything that depends on the time takes ``now`` (an aware UTC datetime) as an argument.
"""
