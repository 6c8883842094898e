"""Online booking: slots, capacity, bookings and check-in (issue 5 builds it here)."""
