"""Presenting results: terminal tables now; HTML reports and plots later."""
