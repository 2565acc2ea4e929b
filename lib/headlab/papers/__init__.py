"""Each paper's method as plain functions; notebooks call these, they import only the core."""
