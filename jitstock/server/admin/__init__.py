"""`jitstock admin`: install-time and housekeeping commands for a plant's server.

init (migrate, first admin key), check (configuration, database, broker, history
store), backup/restore (state DB and history), users/keys from the shell.  Each
command builds its own objects from the same JITSTOCK_* settings as the server.
"""
