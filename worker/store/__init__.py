"""Redis as the system of record: keys, scripts and one repository per resource."""
