"""Stand-ins for Refiner and Kana on loopback: the APIs as the reference describes them, used by
`start --demo` and by the test suite (faults can be switched on at run time)."""
