"""What several test folders share: servers, workers, brokers and receivers on loopback."""
