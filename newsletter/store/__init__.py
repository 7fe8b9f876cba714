"""The subscriber store: the database, its migrations, addresses and CSV files."""
