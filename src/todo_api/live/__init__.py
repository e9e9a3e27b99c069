"""Live updates: waking each open stream when its user's feed moves, whichever process wrote."""
