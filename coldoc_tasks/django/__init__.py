"""Django integration: settings, autostart, checks, commands."""
