"""One package per destination kind, owning everything about it (named in ``destinations.kinds``;
the contract they implement is ``destinations.delivery.contract``)."""
