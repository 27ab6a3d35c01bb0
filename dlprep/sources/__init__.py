"""Source connectors: parameterized public sources (catalogs, APIs, mirror layouts, politeness)."""
