"""Cold-chain rules on device time, and what they produce: breaches, notifications."""
