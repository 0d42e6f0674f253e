"""Thin HTTP routes; the work they start lives in bot.jobs and reviewer."""
