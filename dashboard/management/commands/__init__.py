"""`start` (web server, worker and demo in one command), `demostandins`, `generateencryptionkey`."""
