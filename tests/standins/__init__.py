"""The Refiner and Kana stand-ins that tests and the demo deliver to."""
