"""The reports a European AI data centre and its customers file, computed from the books
(docs/reporting.md): EED data-centre indicators, per-tenant scope 2 with hourly carbon-free
energy, AI Act training compute, and Norway's data-centre registration. Each takes a `Record`
(the twin's or the live service's), so both bodies give the same report."""
