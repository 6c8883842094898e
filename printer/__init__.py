"""Ticket printing: layout, ESC/POS rendering and the print agent (issue 4)."""
