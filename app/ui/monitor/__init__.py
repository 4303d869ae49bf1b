"""The Monitor tab: :class:`app.ui.monitor.view.MonitorView` and its parts (bridge, charts, readout, alerts)."""
