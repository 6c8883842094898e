"""The service layer: commands in, a unit of work around each, the domain doing the deciding."""
