"""The Split tab: :class:`app.ui.split.view.SplitView` and its panels (GPU rows, settings, banner, details)."""
