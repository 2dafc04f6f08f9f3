"""The project as operators run it: start, web server, embedded broker, commands, demo."""
