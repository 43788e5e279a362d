"""The versioned leaderboard: one JSON entry per method and suite, tables rendered from them."""
