"""Everything that talks to GitHub: event routing (events.py, pure), the App client (client.py), reading a pull
request (pulls.py) and publishing a review and a check run (publish.py)."""
