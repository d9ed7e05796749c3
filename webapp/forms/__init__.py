"""WTForms classes by screen area."""
