"""The Fit tab: :class:`app.ui.fit.view.FitView`, its table model and its filters."""
