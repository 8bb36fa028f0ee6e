"""Read-only consumers of run folders: statistics and the HTML report."""
