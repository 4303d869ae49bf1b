"""PySide6 widgets and the Qt adapters over the lower layers."""
