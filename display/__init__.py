"""Display boards: the board state reducer, the board page and announcements (issue 3)."""
