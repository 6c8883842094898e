"""OneDoor queue server: the hall's queue, its API and its composition root."""
