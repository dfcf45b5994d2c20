"""The books: IT and facility energy, carbon (location- and market-based, kept apart), cost,
compute in FLOP (`books`); the models they use (`models`: GPU power, power caps, PUE);
temporal-shifting summaries (`shifting`) and EED indicators (`eed`)."""
